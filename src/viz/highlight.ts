/**
 * Which drawn states and transitions of a statechart a restore visited: the trace's state
 * changes (from, to, event) matched to the machine's transitions. A trace records one
 * change per macrostep, so a change may have gone through an eventless or `done.state`
 * transition too (`phases → verified` on the last FD_REPORT went through `comparing`):
 * then both transitions are credited.
 */
import type { GraphEdge, MachineGraph } from './graph.js';
import type { TransitionVisit } from './model.js';

/** Is the graph node path `path` the state `state` or one of its ancestors? */
export function covers(path: string, state: string): boolean {
  return path === '*' || state === path || state.startsWith(path + '.');
}

const isEventless = (e: GraphEdge): boolean =>
  e.event === '' || e.event.startsWith('xstate.done.state.');

/** Graph edge id → how many state changes of the trace went through it. */
export function edgeCounts(
  g: MachineGraph,
  transitions: readonly TransitionVisit[],
): Map<string, number> {
  const pathOf = new Map(g.nodes.map((n) => [n.id, n.path]));
  const counts = new Map<string, number>();
  const credit = (e: GraphEdge, n: number) => counts.set(e.id, (counts.get(e.id) ?? 0) + n);
  for (const t of transitions) {
    if (t.from === '(start)') continue;
    const src = (e: GraphEdge) => pathOf.get(e.source)!;
    const tgt = (e: GraphEdge) => pathOf.get(e.target)!;
    const byEvent = g.edges.filter(
      (e) => !e.internal && e.event === t.event && covers(src(e), t.from),
    );
    const direct = byEvent.find((e) => covers(tgt(e), t.to));
    if (direct) {
      credit(direct, t.count);
      continue;
    }
    // One eventless step after the evented one.
    for (const first of byEvent) {
      const second = g.edges.find(
        (e) =>
          isEventless(e) &&
          covers(tgt(e), t.to) &&
          (covers(src(e), tgt(first)) || covers(src(e), t.from)),
      );
      if (second) {
        credit(first, t.count);
        credit(second, t.count);
        break;
      }
    }
  }
  return counts;
}
