/**
 * The bench's trees (TreeSpec of src/testing, built for real by buildTree): 1 task
 * (5 dead targets), the 9-task benchmark tree (104 pidfds, 32 dead), and layered trees of
 * 33, 129 and 257 tasks, where each task holds a pidfd to its parent (the root to
 * itself) and one to a dead process, and each leaf also inherits its parent's dead pidfd
 * across fork (tree33 of the test fixtures is `layered(4, 7)`).
 */
import { exited, type TaskSpec, type TreeSpec } from '../src/testing/spec.js';
import { benchmark, deadStatuses } from '../test/fixtures/scenarios.js';

/** root ─ `mids` middle tasks, each ─ `leaves` leaves: 1 + mids·(1 + leaves) tasks. */
export function layered(mids: number, leaves: number): TreeSpec {
  return {
    root: {
      name: 'root',
      pidfds: [
        { fd: 3, target: { task: 'root' } },
        { fd: 4, target: { dead: { status: exited(1) } } },
      ],
      children: Array.from({ length: mids }, (_, m): TaskSpec => {
        const mid = `m${m + 1}`;
        return {
          name: mid,
          pidfds: [
            { fd: 3, target: { task: 'root' } },
            { fd: 4, target: { dead: { status: exited((10 + m) % 256) } } },
          ],
          children: Array.from({ length: leaves }, (_, l): TaskSpec => ({
            name: `${mid}-l${l + 1}`,
            pidfds: [
              { fd: 3, target: { task: mid } },
              { fd: 4, target: { dead: { status: exited(l % 256) } } },
              { fd: 5, sameFileAs: { task: mid, fd: 4 }, via: 'fork' },
            ],
          })),
        };
      }),
    },
  };
}

/** By task count. 257 runs only when asked for (BENCH_TREES=…,257): it is long. */
export const BENCH_TREES: ReadonlyMap<number, TreeSpec> = new Map([
  [1, deadStatuses],
  [9, benchmark],
  [33, layered(4, 7)],
  [129, layered(8, 15)],
  [257, layered(16, 15)],
]);

export const DEFAULT_TREES = [1, 9, 33, 129];

/** The tree whose dump is timed against one bare `node -e 0` (issue 11). */
export const DUMP_TREE = 9;
