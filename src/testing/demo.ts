/**
 * The tree `pidfd-cr demo` builds, dumps and restores: small, but it has one of each
 * common kind.
 *
 *     demo-root ─┬─ worker        alive; holds a pidfd to demo-root and, over
 *                │                SCM_RIGHTS, the root's pidfd to a dead process
 *                └─ finished      zombie, exit 3
 *
 * demo-root fds: 3 → worker, 4 → a process that exited with 7 (reaped),
 *                5 → finished (zombie), 6 → itself (O_NONBLOCK, close-on-exec cleared)
 */
import { exited, type TreeSpec } from './spec.js';

export const DEMO_TREE: TreeSpec = {
  root: {
    name: 'demo-root',
    pidfds: [
      { fd: 3, target: { task: 'worker' } },
      { fd: 4, target: { dead: { status: exited(7) } } },
      { fd: 5, target: { task: 'finished' } },
      { fd: 6, target: { task: 'demo-root' }, nonblock: true, cloexec: false },
    ],
    children: [
      {
        name: 'worker',
        pidfds: [
          { fd: 3, target: { task: 'demo-root' } },
          { fd: 4, sameFileAs: { task: 'demo-root', fd: 4 }, via: 'scm-rights' },
        ],
      },
      { name: 'finished', zombie: { status: exited(3) } },
    ],
  },
};
