/** in-tree-alive: a live process of the tree. */
import type { TargetKindModule } from './kind.js';
import { pidfdOpen, planInTree, recogniseInTree, validateInTree } from './in-tree.js';

export const inTreeAlive: TargetKindModule<'in-tree-alive'> = {
  name: 'in-tree-alive',
  protoNumber: 1,
  owns: [],
  strategies: [pidfdOpen],
  recognise: (s) => recogniseInTree(s, false),
  validate: (target, where, ctx) => validateInTree(target, where, ctx, false),
  names: (target) => `process ${target.taskPid}`,
  plan: (target, _file, ctx) => planInTree(target, ctx, false),
  expect: (target, ctx) => ({ alive: true, pid: ctx.restoredPid(target.taskPid), running: true }),
  describe: (target, ctx) => `process ${target.pid}${ctx.commOf(target.taskPid)}`,
  example: (target) => ({ kind: 'in-tree-alive', pid: target.pid }),
};
