/**
 * What the two in-tree kinds (in-tree-alive.ts, in-tree-zombie.ts) share: a task of the
 * tree, alive or a zombie, reopened with pidfd_open of its restored pid (the
 * `pidfd-open` strategy, also used for a thread target that is its task's leader).
 */
import { PcrError } from '../errors.js';
import type { Target } from '../model/image.js';
import { fail, sightedTarget } from './common.js';
import type { OpenStrategy, Planned, PlanContext, Sighting, ValidateContext } from './kind.js';

export const pidfdOpen: OpenStrategy<'pidfd-open'> = {
  name: 'pidfd-open',
  wireNumber: 1,
  wireFields: { taskPid: 'int' },
  pidfdFlags: 0,
  open: (how, as, ops) => ops.openPid(ops.restoredPid(how.taskPid), as),
};

/** A pid of the tree names one process (the tree is frozen): its ino must be the task's. */
export function recogniseInTree(s: Sighting, zombie: boolean): Target | undefined {
  const p = s.pidfd;
  const taskIno = s.tree.taskIno.get(p.pid);
  if (taskIno === undefined || s.tree.zombies.has(p.pid) !== zombie) return undefined;
  if (taskIno !== p.ino) {
    throw new PcrError(
      'PCR_ERR_INTERNAL',
      `${s.where}: target pid ${p.pid} is a task of the tree, but ino ${p.ino} is not its ino ${taskIno}`,
    );
  }
  return sightedTarget(s, zombie ? 'in-tree-zombie' : 'in-tree-alive', { taskPid: p.pid });
}

export function validateInTree(
  target: Target,
  where: string,
  ctx: ValidateContext,
  zombie: boolean,
): void {
  const entry = ctx.tasks.get(target.taskPid);
  if (!entry) fail(`${where}.task_pid`, `${target.taskPid} is not a task of the image`);
  const isZombie = entry.task.state === 'zombie';
  if (zombie && !isZombie) {
    fail(`${where}.task_pid`, `task ${target.taskPid} is ${entry.task.state}, not a zombie`);
  }
  if (!zombie && isZombie) {
    fail(`${where}.task_pid`, `task ${target.taskPid} is a zombie (kind should be in-tree-zombie)`);
  }
  if (target.pid !== target.taskPid) {
    fail(`${where}.pid`, `${target.pid} differs from task_pid ${target.taskPid}`);
  }
  if (target.tid !== 0) fail(`${where}.tid`, `is set (${target.tid}) on a process target`);
}

export function planInTree(target: Target, ctx: PlanContext, zombie: boolean): Planned | string {
  const task = ctx.tasks.get(target.taskPid);
  if (task === undefined) return `target task ${target.taskPid} is not in the image`;
  if ((task.state === 'zombie') !== zombie) {
    return `target task ${target.taskPid} is ${task.state} but the target is ${target.kind}`;
  }
  return { dead: false, how: { strategy: 'pidfd-open', taskPid: task.pid } };
}
