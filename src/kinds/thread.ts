/**
 * thread: a live non-leader thread of a task of the tree (a PIDFD_THREAD pidfd), reopened
 * with pidfd_open(restored tid, PIDFD_THREAD) from a thread the restored task starts.
 */
import { PcrError } from '../errors.js';
import { isThreadFlags, reopenFlagsFor } from '../model/flags.js';
import { FLAGS } from '../model/image.js';
import { fail, sightedTarget } from './common.js';
import type { OpenStrategy, TargetKindModule } from './kind.js';

export const threadOpen: OpenStrategy<'thread-open'> = {
  name: 'thread-open',
  wireNumber: 2,
  wireFields: { taskPid: 'int', tid: 'int' },
  pidfdFlags: FLAGS.O_EXCL, // = PIDFD_THREAD
  liveThread: (how) => ({ taskPid: how.taskPid, tid: how.tid }),
  open: (how, as, ops) => {
    const tid = ops.restoredTid(how.tid);
    if (tid === undefined) {
      throw new PcrError('PCR_ERR_INTERNAL', `no restored thread for dumped tid ${how.tid}`);
    }
    return ops.openPid(tid, as);
  },
};

export const thread: TargetKindModule<'thread'> = {
  name: 'thread',
  protoNumber: 4,
  owns: [],
  strategies: [threadOpen],
  recognise: (s) => {
    const owner = s.tree.threadOwner.get(s.pidfd.pid);
    if (owner === undefined) return undefined;
    return sightedTarget(s, 'thread', { taskPid: owner, tid: s.pidfd.pid });
  },
  names: (target) => `thread ${target.tid}`,
  validate: (target, where, ctx) => {
    if (target.tid === 0) fail(`${where}.tid`, 'a thread target needs its thread id');
    const entry = ctx.tasks.get(target.taskPid);
    if (!entry) fail(`${where}.task_pid`, `${target.taskPid} is not a task of the image`);
    const tids = entry.task.tids;
    if (!tids.includes(target.tid) || target.tid === target.taskPid) {
      fail(`${where}.tid`, `${target.tid} is not a non-leader thread of task ${target.taskPid}`);
    }
    if (target.pid !== target.tid) {
      fail(`${where}.pid`, `${target.pid} differs from tid ${target.tid} (fdinfo shows the tid)`);
    }
  },
  plan: (target, file, ctx) => {
    const task = ctx.tasks.get(target.taskPid);
    if (task === undefined || task.state === 'zombie') {
      return `thread ${target.tid} belongs to task ${target.taskPid}, which is not a live task of the image`;
    }
    if (target.tid === task.pid)
      return { dead: false, how: { strategy: 'pidfd-open', taskPid: task.pid } };
    if (!isThreadFlags(file.flags) && reopenFlagsFor(file.flags) === undefined) {
      return { refusal: `a thread pidfd without PIDFD_THREAD cannot be made` };
    }
    return { dead: false, how: { strategy: 'thread-open', taskPid: task.pid, tid: target.tid } };
  },
  expect: (target, ctx) => ({
    alive: true,
    pid:
      target.tid === target.taskPid ? ctx.restoredPid(target.taskPid) : ctx.restoredTid(target.tid),
  }),
  describe: (target, ctx) =>
    `thread ${target.tid} of ${target.taskPid}${ctx.commOf(target.taskPid)}`,
  example: (target) => ({ kind: 'thread', tid: target.tid, taskPid: target.taskPid }),
};
