/** The statecharts come from the machine definitions, whole; docs/machines.md is their output. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { machineGraph, MACHINES, toMermaid, type MachineName } from '../../src/viz/graph.js';
import { updateMachinesDoc, machineBlock } from '../../src/viz/docs.js';
import { layoutGraph } from '../../src/viz/layout.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const DOC = fileURLToPath(new URL('../../../docs/machines.md', import.meta.url));

interface JsonNode {
  id: string;
  states: Record<string, JsonNode>;
  on: Record<string, Array<{ target?: string[]; guard?: unknown; eventType: string }>>;
  invoke: Array<{ id: string }>;
}

/** Every state id and every (source, event, target) of toJSON(), which the graph must hold. */
function fromJson(name: MachineName) {
  // Through JSON text, as a tool reading toJSON() gets it (targets become "#id" strings).
  const root = JSON.parse(JSON.stringify(MACHINES[name].toJSON())) as JsonNode;
  const states: string[] = [];
  const transitions: string[] = [];
  const invokes: string[] = [];
  const walk = (n: JsonNode, isRoot: boolean) => {
    if (!isRoot) states.push(n.id);
    for (const inv of n.invoke) invokes.push(`${n.id}:${inv.id}`);
    for (const list of Object.values(n.on))
      for (const t of list)
        for (const target of t.target?.length ? t.target : [isRoot ? `${n.id}.*` : n.id])
          transitions.push(
            `${isRoot ? `${n.id}.*` : n.id} ${t.eventType} ${target.replace(/^#/, '')}`,
          );
    for (const c of Object.values(n.states)) walk(c, false);
  };
  walk(root, true);
  return { states, transitions, invokes };
}

for (const name of ['task', 'coordinator'] as const) {
  test(`${name}: every state, transition and invoke of the definition is in the graph`, () => {
    const g = machineGraph(name);
    const want = fromJson(name);
    const nodeIds = g.nodes.filter((n) => n.type !== 'any').map((n) => n.id);
    assert.deepEqual([...nodeIds].sort(), [...want.states].sort());
    const edges = g.edges.map((e) => `${e.source} ${e.event} ${e.target}`);
    for (const t of want.transitions) assert.ok(edges.includes(t), `missing ${t}`);
    const invokes = g.nodes.flatMap((n) => n.invokes.map((i) => `${n.id}:${i.split(' ')[0]}`));
    assert.deepEqual(invokes.sort(), want.invokes.sort());
    // toJSON() drops eventless transitions; the graph has them (the coordinator's
    // comparing: 1, handed-off: 5, running: 1).
    const always = g.edges.filter((e) => e.event === '');
    assert.equal(always.length, name === 'coordinator' ? 7 : 0);
    // Guards by name (a guard with parameters from the event shows its name).
    if (name === 'task') assert.ok(g.edges.some((e) => e.guard === 'tempDiedWrong'));
    const mermaid = toMermaid(g);
    for (const n of g.nodes) assert.ok(mermaid.includes(`state "${n.label}" as `), n.id);
    assert.equal((mermaid.match(/^\s*state "/gm) ?? []).length, g.nodes.length);
    assert.equal((mermaid.match(/ --> (?!\[\*\])\S+ : /g) ?? []).length, g.edges.length);
  });

  test(`${name}: ELK lays out every node, inside the picture`, async () => {
    const laid = await layoutGraph(machineGraph(name));
    assert.equal(laid.nodes.length, machineGraph(name).nodes.length);
    for (const n of laid.nodes) {
      assert.ok(n.width > 0 && n.height > 0);
      assert.ok(
        n.x >= 0 && n.y >= 0 && n.x + n.width <= laid.width && n.y + n.height <= laid.height,
        n.node.id,
      );
    }
    // Leaves never overlap.
    const leaves = laid.nodes.filter((n) => !n.compound);
    for (const a of leaves)
      for (const b of leaves)
        if (a !== b)
          assert.ok(
            a.x + a.width <= b.x ||
              b.x + b.width <= a.x ||
              a.y + a.height <= b.y ||
              b.y + b.height <= a.y,
            `${a.node.id} overlaps ${b.node.id}`,
          );
  });
}

test('docs/machines.md holds the current output of `machines --format mermaid` (npm run docs:machines)', () => {
  const doc = readFileSync(DOC, 'utf8');
  assert.equal(doc, updateMachinesDoc(doc), 'docs/machines.md is stale: run npm run docs:machines');
  for (const m of ['task', 'coordinator'] as const) {
    const r = spawnSync(
      process.execPath,
      [MAIN, 'machines', '--format', 'mermaid', '--machine', m],
      { encoding: 'utf8' },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.ok(
      doc.includes('```mermaid\n' + r.stdout + '```'),
      `${m}: the command's output is in the doc`,
    );
    assert.ok(machineBlock(m).includes(r.stdout));
  }
});

test('pidfd-cr machines: formats and bad options', () => {
  const run = (...args: string[]) =>
    spawnSync(process.execPath, [MAIN, 'machines', ...args], { encoding: 'utf8' });
  const json = JSON.parse(run('--format', 'json').stdout) as Array<{ machine: string }>;
  assert.deepEqual(
    json.map((g) => g.machine),
    ['coordinator', 'task'],
  );
  assert.match(run('--format', 'dot', '--machine', 'task').stdout, /^digraph "task" \{/);
  const svg = run('--format', 'svg', '--machine', 'coordinator').stdout;
  assert.match(svg, /^<svg /);
  assert.equal(
    (svg.match(/data-state-node=/g) ?? []).length,
    machineGraph('coordinator').nodes.length,
  );
  const bad = run('--machine', 'robot');
  assert.equal(bad.status, 2);
  assert.match(
    bad.stderr,
    /^pidfd-cr: machines: --machine must be task, coordinator or all, got 'robot'\n$/,
  );
});
