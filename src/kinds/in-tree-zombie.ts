/** in-tree-zombie: a task of the tree that exited and is not reaped. */
import type { TargetKindModule } from './kind.js';
import { planInTree, recogniseInTree, validateInTree } from './in-tree.js';

export const inTreeZombie: TargetKindModule<'in-tree-zombie'> = {
  name: 'in-tree-zombie',
  protoNumber: 2,
  owns: [],
  strategies: [],
  recognise: (s) => recogniseInTree(s, true),
  validate: (target, where, ctx) => validateInTree(target, where, ctx, true),
  names: (target) => `process ${target.taskPid}`,
  plan: (target, _file, ctx) => planInTree(target, ctx, true),
  expect: (target, ctx) => {
    const exitStatus = ctx.task(target.taskPid)?.exitStatus;
    return {
      alive: true,
      pid: ctx.restoredPid(target.taskPid),
      zombie: exitStatus === undefined ? {} : { exitStatus },
    };
  },
  describe: (target, ctx) => {
    const status = ctx.task(target.taskPid)?.exitStatus;
    const how = status === undefined ? '' : `, ${ctx.endText(status)}`;
    return `zombie ${target.pid}${ctx.commOf(target.taskPid)}${how}`;
  },
  example: (target) => ({ kind: 'in-tree-zombie', pid: target.pid }),
};
