/**
 * The statechart of a machine as plain data, read from the machine definition itself
 * (`machine.root`: every state node, its `transitions`, `always`, `invoke` and `entry`),
 * so that nothing is drawn by hand: mermaid, dot, JSON and SVG (layout.ts) are made from it.
 *
 * `machine.toJSON()` drops eventless (`always`) transitions; the state nodes keep them.
 * Transitions defined on the machine's root (TEARDOWN, WORKER_FAILED, …: "from any
 * state") start at a pseudo node `<machine>.*`, labelled "any state".
 */
import type { AnyStateMachine } from 'xstate';
import { taskMachine } from '../machines/task.js';
import { coordinatorMachine } from '../machines/coordinator.js';

export type MachineName = 'task' | 'coordinator';

export interface GraphNode {
  /** The machine id and the state path: "task.become-creator.opening"; "task.*" for "any state". */
  id: string;
  /** The state path as the trace writes it ("become-creator.opening"); "*" for "any state". */
  path: string;
  /** The last key of the path. */
  label: string;
  type: 'atomic' | 'compound' | 'parallel' | 'final' | 'history' | 'any';
  /** Id of the parent state node; undefined at the top level. */
  parent?: string;
  /** The initial child's id (compound states). */
  initial?: string;
  /** Invoked actors: `id` (and `src` when it differs). */
  invokes: string[];
  /** Named entry actions. */
  entry: string[];
}

export interface GraphEdge {
  /** "task.ready#PHASE#2": source, event and index among that source's transitions. */
  id: string;
  source: string;
  /** The target node; equal to `source` for a transition without a target (internal). */
  target: string;
  /** The XState event type ("PHASE", "xstate.done.actor.openFiles"); "" for `always`. */
  event: string;
  /** A readable form of the event ("done: openFiles", "after phaseTimeout", "always"). */
  eventLabel: string;
  guard?: string;
  actions: string[];
  /** No target: actions only, the state is not left. */
  internal: boolean;
}

export interface MachineGraph {
  machine: MachineName;
  /** Root id of the XState machine. */
  id: string;
  initial: string;
  nodes: GraphNode[];
  edges: GraphEdge[];
}

export const MACHINES: Record<MachineName, AnyStateMachine> = {
  task: taskMachine,
  coordinator: coordinatorMachine,
};

/** A readable event label. */
export function eventLabel(type: string): string {
  if (type === '') return 'always';
  let m = /^xstate\.done\.actor\.(.+)$/.exec(type);
  if (m) return `done: ${m[1]}`;
  m = /^xstate\.error\.actor\.(.+)$/.exec(type);
  if (m) return `error: ${m[1]}`;
  m = /^xstate\.after\.([^.]+)\./.exec(type);
  if (m) return `after ${m[1]}`;
  if (type.startsWith('xstate.done.state.')) return 'done (final child)';
  return type;
}

type Named =
  { type?: unknown; params?: unknown; name?: unknown } | string | ((...a: never[]) => unknown);

/** "isPhase(open-alive)", "allRegistered"; a function guard by its name. */
function nameOf(x: Named): string {
  if (typeof x === 'string') return x;
  if (typeof x === 'function') return x.name && x.name !== 'anonymous' ? x.name : 'inline';
  const type = typeof x.type === 'string' ? x.type : 'inline';
  if (x.params && typeof x.params === 'object') {
    // Only plain values are shown: a message object as a parameter is not a label.
    const values = Object.values(x.params as Record<string, unknown>)
      .filter((v) => ['string', 'number', 'boolean'].includes(typeof v))
      .map(String);
    return values.length > 0 ? `${type}(${values.join(', ')})` : type;
  }
  return type;
}

/** A named action ("xstate.raise" is shown as "raise"). */
const actionName = (a: Named): string => nameOf(a).replace(/^xstate\./, '');

interface StateNodeLike {
  id: string;
  key: string;
  type: string;
  path: string[];
  states: Record<string, StateNodeLike>;
  transitions: Map<string, TransitionLike[]>;
  always?: TransitionLike[];
  invoke: Array<{ id: string; src: unknown }>;
  entry: Named[];
  initial?: { target: StateNodeLike[] };
}

interface TransitionLike {
  target?: StateNodeLike[];
  guard?: Named;
  actions: Named[];
  eventType: string;
}

/** The graph of one machine. */
export function machineGraph(name: MachineName): MachineGraph {
  const machine = MACHINES[name];
  const root = machine.root as unknown as StateNodeLike;
  const nodes: GraphNode[] = [];
  const edges: GraphEdge[] = [];
  const anyId = `${root.id}.*`;
  const idOf = (n: StateNodeLike): string => (n === root ? anyId : n.id);

  const addTransitions = (n: StateNodeLike): void => {
    const list: TransitionLike[] = [...[...n.transitions.values()].flat(), ...(n.always ?? [])];
    let i = 0;
    for (const t of list) {
      const source = idOf(n);
      const targets = t.target && t.target.length > 0 ? t.target.map(idOf) : [source];
      for (const target of targets) {
        const event = t.eventType ?? '';
        edges.push({
          id: `${source}#${event || 'always'}#${i++}`,
          source,
          target,
          event,
          eventLabel: eventLabel(event),
          ...(t.guard !== undefined ? { guard: nameOf(t.guard) } : {}),
          actions: t.actions.map(actionName),
          internal: !t.target || t.target.length === 0,
        });
      }
    }
  };

  const walk = (n: StateNodeLike, parent: string | undefined): void => {
    const children = Object.values(n.states);
    nodes.push({
      id: n.id,
      path: n.path.join('.'),
      label: n.key,
      type: n.type as GraphNode['type'],
      ...(parent ? { parent } : {}),
      ...(n.initial && n.initial.target.length > 0 ? { initial: n.initial.target[0]!.id } : {}),
      invokes: n.invoke.map((inv) =>
        typeof inv.src === 'string' && inv.src !== inv.id ? `${inv.id} (${inv.src})` : inv.id,
      ),
      entry: n.entry.map(actionName),
    });
    addTransitions(n);
    for (const c of children) walk(c, n.id);
  };

  for (const c of Object.values(root.states)) walk(c, undefined);
  if (root.transitions.size > 0 || (root.always?.length ?? 0) > 0) {
    nodes.push({ id: anyId, path: '*', label: 'any state', type: 'any', invokes: [], entry: [] });
    addTransitions(root);
  }
  return {
    machine: name,
    id: root.id,
    initial: root.initial?.target[0]?.id ?? '',
    nodes,
    edges,
  };
}

/** The label of an edge: event, guard in brackets, then the actions after a slash. */
export function edgeText(e: GraphEdge, withActions = true): string {
  let s = e.eventLabel;
  if (e.guard) s += ` [${e.guard}]`;
  if (withActions && e.actions.length > 0) s += ` / ${e.actions.join(', ')}`;
  return s;
}

const mermaidId = (id: string): string => id.replace(/\*/g, 'any').replace(/[^A-Za-z0-9]/g, '_');
/** Mermaid treats some characters in labels as syntax. */
const mermaidText = (s: string): string =>
  s
    .replace(/[:;{}#]/g, ' ')
    .replace(/\s+/g, ' ')
    .trim();

/**
 * A mermaid `stateDiagram-v2` of one machine. State ids are global in mermaid, but an edge
 * between two children of a composite state is written inside that state's block (mermaid
 * would otherwise draw the children a second time, outside the composite).
 */
export function toMermaid(g: MachineGraph): string {
  const out: string[] = ['stateDiagram-v2'];
  const byId = new Map(g.nodes.map((n) => [n.id, n]));
  const children = (parent: string | undefined) => g.nodes.filter((n) => n.parent === parent);
  const ancestors = (id: string): string[] => {
    const list: string[] = [];
    for (let p = byId.get(id)?.parent; p !== undefined; p = byId.get(p)?.parent) list.push(p);
    return list;
  };
  /** The innermost composite state holding both ends (undefined: the top level). */
  const home = (e: GraphEdge): string | undefined => {
    const a = ancestors(e.source);
    return ancestors(e.target).find((p) => a.includes(p));
  };
  const edgeLine = (e: GraphEdge, indent: string): string => {
    const label = mermaidText(edgeText(e) + (e.internal ? ' (internal)' : ''));
    return `${indent}${mermaidId(e.source)} --> ${mermaidId(e.target)} : ${label}`;
  };
  const emit = (n: GraphNode, indent: string): void => {
    const id = mermaidId(n.id);
    const kids = children(n.id);
    if (kids.length > 0) {
      out.push(`${indent}state "${n.label}" as ${id} {`);
      if (n.initial) out.push(`${indent}  [*] --> ${mermaidId(n.initial)}`);
      for (const k of kids) emit(k, indent + '  ');
      for (const e of g.edges) if (home(e) === n.id) out.push(edgeLine(e, indent + '  '));
      out.push(`${indent}}`);
    } else {
      out.push(`${indent}state "${n.label}" as ${id}`);
      if (n.type === 'final') out.push(`${indent}${id} --> [*]`);
    }
    for (const inv of n.invokes) out.push(`${indent}${id} : invoke ${mermaidText(inv)}`);
    if (n.entry.length > 0) out.push(`${indent}${id} : entry ${mermaidText(n.entry.join(', '))}`);
  };
  out.push(`  [*] --> ${mermaidId(g.initial)}`);
  for (const n of children(undefined)) emit(n, '  ');
  for (const e of g.edges) if (home(e) === undefined) out.push(edgeLine(e, '  '));
  return out.join('\n') + '\n';
}

const dotText = (s: string): string => JSON.stringify(s);

/** A Graphviz digraph of one machine: compound states as clusters. */
export function toDot(g: MachineGraph): string {
  const out: string[] = [
    `digraph ${dotText(g.id)} {`,
    '  compound=true; rankdir=TB; node [shape=box, style=rounded, fontname="sans-serif"]; edge [fontname="sans-serif", fontsize=10];',
    '  "__initial" [shape=point];',
  ];
  const compound = new Set(
    g.nodes.filter((n) => g.nodes.some((c) => c.parent === n.id)).map((n) => n.id),
  );
  const children = (parent: string | undefined) => g.nodes.filter((n) => n.parent === parent);
  // A cluster cannot be an edge end: its edges attach to its initial child (lhead/ltail).
  const anchor = (id: string): string => {
    let n = g.nodes.find((x) => x.id === id);
    while (n && compound.has(n.id) && n.initial) n = g.nodes.find((x) => x.id === n!.initial);
    return n?.id ?? id;
  };
  const label = (n: GraphNode): string =>
    [
      n.label,
      ...n.invokes.map((i) => `invoke ${i}`),
      ...(n.entry.length ? [`entry ${n.entry.join(', ')}`] : []),
    ].join('\\n');
  const emit = (n: GraphNode, indent: string): void => {
    if (compound.has(n.id)) {
      out.push(`${indent}subgraph ${dotText(`cluster_${n.id}`)} {`);
      out.push(`${indent}  label=${dotText(label(n)).replace(/\\\\n/g, '\\n')}; style=rounded;`);
      for (const k of children(n.id)) emit(k, indent + '  ');
      out.push(`${indent}}`);
    } else {
      const shape =
        n.type === 'final' ? ', peripheries=2' : n.type === 'any' ? ', style="dashed,rounded"' : '';
      out.push(
        `${indent}${dotText(n.id)} [label=${dotText(label(n)).replace(/\\\\n/g, '\\n')}${shape}];`,
      );
    }
  };
  for (const n of children(undefined)) emit(n, '  ');
  out.push(`  "__initial" -> ${dotText(anchor(g.initial))};`);
  for (const e of g.edges) {
    const attrs = [`label=${dotText(edgeText(e))}`];
    if (compound.has(e.source)) attrs.push(`ltail=${dotText(`cluster_${e.source}`)}`);
    if (compound.has(e.target)) attrs.push(`lhead=${dotText(`cluster_${e.target}`)}`);
    if (e.internal) attrs.push('style=dashed');
    out.push(
      `  ${dotText(anchor(e.source))} -> ${dotText(anchor(e.target))} [${attrs.join(', ')}];`,
    );
  }
  out.push('}');
  return out.join('\n') + '\n';
}
