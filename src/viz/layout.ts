/**
 * Lays out a machine graph (graph.ts) with ELK (elkjs, layered algorithm, compound states
 * laid out with their children: `hierarchyHandling: INCLUDE_CHILDREN`), in Node, at render
 * time: the page gets finished SVG and needs no script for it. Coordinates are absolute
 * (`elk.json.shapeCoords`/`edgeCoords: ROOT`).
 *
 * Drawn edges: the transitions of one source and target share one edge, one label line
 * each (five transitions lead from `registering` to `aborting`); transitions without a
 * target (actions only) are listed inside their state's box, not drawn as loops.
 */
import { createRequire } from 'node:module';
import type { ELK as ElkApi, ElkExtendedEdge, ElkNode } from 'elkjs/lib/elk-api.js';
import { edgeText, type GraphEdge, type GraphNode, type MachineGraph } from './graph.js';

// elkjs is CommonJS (module.exports is the constructor, ES-module-flagged): require it.
const ELK = createRequire(import.meta.url)('elkjs/lib/elk.bundled.js') as new () => ElkApi;

export const FONT_PX = 12;
/** Width of one character at FONT_PX, generous for a sans-serif face (labels must not overflow). */
const CHAR_PX = 7.2;
export const LINE_PX = 15;
const PAD_X = 10;

export interface BoxLine {
  text: string;
  kind: 'title' | 'invoke' | 'entry' | 'internal' | 'stats' | 'who';
}

export interface LaidNode {
  node: GraphNode;
  x: number;
  y: number;
  width: number;
  height: number;
  compound: boolean;
  lines: BoxLine[];
}

export interface LaidEdge {
  /** Transitions drawn by this edge. */
  edges: GraphEdge[];
  source: string;
  target: string;
  /** SVG path data. */
  d: string;
  label: { x: number; y: number; lines: string[] };
}

export interface LaidGraph {
  graph: MachineGraph;
  width: number;
  height: number;
  nodes: LaidNode[];
  edges: LaidEdge[];
}

const textWidth = (s: string, px = CHAR_PX): number => Math.ceil(s.length * px);

/** The lines of a state's box; `stats` and `who` are reserved (filled by the page). */
export function boxLines(n: GraphNode, internal: GraphEdge[]): BoxLine[] {
  const lines: BoxLine[] = [{ text: n.label, kind: 'title' }];
  for (const i of n.invokes) lines.push({ text: `invoke ${i}`, kind: 'invoke' });
  if (n.entry.length > 0) lines.push({ text: `entry ${n.entry.join(', ')}`, kind: 'entry' });
  for (const e of internal) lines.push({ text: `↻ ${edgeText(e)}`, kind: 'internal' });
  return lines;
}

/** One drawn edge per (source, target) pair of targeted transitions. */
function drawnEdges(g: MachineGraph): Array<{ id: string; edges: GraphEdge[] }> {
  const groups = new Map<string, GraphEdge[]>();
  for (const e of g.edges) {
    if (e.internal) continue;
    const key = `${e.source}->${e.target}`;
    const list = groups.get(key) ?? [];
    list.push(e);
    groups.set(key, list);
  }
  return [...groups.entries()].map(([id, edges]) => ({ id, edges }));
}

/** Label lines of a drawn edge: one per transition, the actions left out (they are in the JSON). */
const edgeLines = (edges: GraphEdge[]): string[] => edges.map((e) => edgeText(e, false));

export async function layoutGraph(g: MachineGraph): Promise<LaidGraph> {
  const compound = new Set(
    g.nodes.filter((n) => g.nodes.some((c) => c.parent === n.id)).map((n) => n.id),
  );
  const internalOf = (id: string) => g.edges.filter((e) => e.internal && e.source === id);
  const linesOf = new Map(g.nodes.map((n) => [n.id, boxLines(n, internalOf(n.id))]));
  // Two reserved lines under every leaf: visit statistics and the machines there now.
  const reserved = 2;
  const size = (n: GraphNode) => {
    const lines = linesOf.get(n.id)!;
    const width = Math.max(
      110,
      ...lines.map(
        (l) => textWidth(l.text, l.kind === 'title' ? CHAR_PX + 0.4 : CHAR_PX - 1.2) + 2 * PAD_X,
      ),
    );
    return { width, height: (lines.length + reserved) * LINE_PX + 10 };
  };
  const elkNode = (n: GraphNode): ElkNode => {
    const kids = g.nodes.filter((c) => c.parent === n.id);
    if (kids.length === 0) return { id: n.id, ...size(n) };
    const header = linesOf.get(n.id)!.length + reserved;
    return {
      id: n.id,
      layoutOptions: { 'elk.padding': `[top=${header * LINE_PX + 14},left=14,bottom=14,right=14]` },
      children: kids.map(elkNode),
    };
  };
  const drawn = drawnEdges(g);
  const edges: ElkExtendedEdge[] = drawn.map(({ id, edges }) => {
    const lines = edgeLines(edges);
    return {
      id,
      sources: [edges[0]!.source],
      targets: [edges[0]!.target],
      labels: [
        {
          text: lines.join('\n'),
          // Room for the visit count the page appends (" ×12").
          width: Math.max(...lines.map((l) => textWidth(`${l} ×99`, CHAR_PX - 1.2))) + 6,
          height: lines.length * (LINE_PX - 2) + 4,
        },
      ],
    };
  });
  const root: ElkNode = {
    id: `${g.id}#root`,
    layoutOptions: {
      'elk.algorithm': 'layered',
      'elk.direction': 'DOWN',
      'elk.hierarchyHandling': 'INCLUDE_CHILDREN',
      'elk.edgeRouting': 'ORTHOGONAL',
      'elk.layered.spacing.nodeNodeBetweenLayers': '36',
      'elk.spacing.nodeNode': '28',
      'elk.spacing.edgeLabel': '4',
      'elk.spacing.edgeEdge': '12',
      'elk.layered.spacing.edgeNodeBetweenLayers': '16',
      'elk.layered.nodePlacement.strategy': 'NETWORK_SIMPLEX',
      'elk.edgeLabels.placement': 'CENTER',
      'elk.json.shapeCoords': 'ROOT',
      'elk.json.edgeCoords': 'ROOT',
      'elk.padding': '[top=12,left=12,bottom=12,right=12]',
    },
    children: g.nodes.filter((n) => n.parent === undefined).map(elkNode),
    edges,
  };
  const elk = new ELK();
  const out = await elk.layout(root);

  const nodes: LaidNode[] = [];
  const byId = new Map(g.nodes.map((n) => [n.id, n]));
  const visit = (k: ElkNode): void => {
    const n = byId.get(k.id);
    if (n)
      nodes.push({
        node: n,
        x: k.x ?? 0,
        y: k.y ?? 0,
        width: k.width ?? 0,
        height: k.height ?? 0,
        compound: compound.has(n.id),
        lines: linesOf.get(n.id)!,
      });
    for (const c of k.children ?? []) visit(c);
  };
  visit(out);
  const laidEdges: LaidEdge[] = [];
  const collectEdges = (k: ElkNode): void => {
    for (const e of (k.edges ?? []) as ElkExtendedEdge[]) {
      const group = drawn.find((d) => d.id === e.id)!;
      const parts: string[] = [];
      for (const s of e.sections ?? []) {
        const pts = [s.startPoint, ...(s.bendPoints ?? []), s.endPoint];
        parts.push(
          pts.map((p, i) => `${i === 0 ? 'M' : 'L'}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(' '),
        );
      }
      const l = e.labels?.[0];
      laidEdges.push({
        edges: group.edges,
        source: group.edges[0]!.source,
        target: group.edges[0]!.target,
        d: parts.join(' '),
        label: { x: l?.x ?? 0, y: l?.y ?? 0, lines: edgeLines(group.edges) },
      });
    }
    for (const c of k.children ?? []) collectEdges(c);
  };
  collectEdges(out);
  return { graph: g, width: out.width ?? 0, height: out.height ?? 0, nodes, edges: laidEdges };
}
