/**
 * external: a process (or thread) outside the tree, alive or a zombie at dump. Reopened
 * by pid on the same boot, its identity proven by ino; or, with externalDead, restored as
 * a dead target whose x dies by SIGKILL.
 */
import { checkNoTaskPid, fail, sightedTarget } from './common.js';
import type { OpenStrategy, TargetKindModule } from './kind.js';

export const externalReopen: OpenStrategy<'external-reopen'> = {
  name: 'external-reopen',
  wireNumber: 3,
  wireFields: { pid: 'int', ino: 'u64', bootId: 'string', zombie: 'bool' },
  pidfdFlags: 0,
  open: (how, as, ops) =>
    ops.openExternal({ pid: how.pid, ino: BigInt(how.ino), comm: '' }, as, how.bootId),
};

export const external: TargetKindModule<'external'> = {
  name: 'external',
  protoNumber: 5,
  owns: ['zombie', 'tgid'],
  strategies: [externalReopen],
  recognise: (s) => {
    const pid = s.pidfd.pid;
    if (pid <= 0 || s.tree.taskIno.has(pid) || s.tree.threadOwner.has(pid)) return undefined;
    const ext = s.probes.external(pid);
    const thread = ext.tgid !== pid;
    return sightedTarget(s, 'external', {
      comm: ext.comm,
      zombie: ext.zombie,
      ...(thread ? { tid: pid, tgid: ext.tgid } : {}),
    });
  },
  validate: (target, where, ctx) => {
    checkNoTaskPid(target, where);
    ctx.checkPid(target.pid, `${where}.pid`);
    const task = ctx.tasks.get(target.pid);
    if (task) fail(`${where}.pid`, `${target.pid} is tasks[${task.index}]: not external`);
    const owner = ctx.threads.get(target.pid);
    if (owner !== undefined)
      fail(`${where}.pid`, `${target.pid} is a thread of tasks[${owner}]: not external`);
    // A thread other than the leader is reaped by the kernel as it exits, never a zombie.
    if (target.zombie && target.tgid !== 0)
      fail(`${where}.zombie`, `set on a thread (tgid ${target.tgid}): only a process is a zombie`);
  },
  names: (target) => (target.tid !== 0 ? `thread ${target.tid}` : `process ${target.pid}`),
  plan: (target, _file, ctx) => {
    const what = `external target pid ${target.pid} (${target.comm || '?'}, ino ${target.ino})`;
    if (ctx.externalDead)
      return { dead: true, exitStatus: ctx.sigkillStatus, source: 'assumed-sigkill' };
    if (target.pid <= 0) return { refusal: `${what} is not visible in the dumper's pid namespace` };
    if (ctx.currentBootId !== undefined && ctx.currentBootId !== ctx.bootId) {
      return {
        refusal: `${what} cannot be reopened on another boot (dumped on ${ctx.bootId}); restore it as dead with --external-dead (restoreImage option externalDead)`,
      };
    }
    return {
      dead: false,
      how: {
        strategy: 'external-reopen',
        pid: target.pid,
        ino: target.ino.toString(),
        bootId: ctx.bootId,
        zombie: target.zombie,
      },
    };
  },
  // Under --pidns new the holders see it from inside a namespace it is not in: fdinfo
  // `Pid: 0` (the kernel's "not visible here"), and its pidfs ino is the identity.
  expect: (target, ctx) =>
    ctx.externalDead
      ? { alive: false, exitStatus: ctx.sigkillStatus }
      : { alive: true, pid: ctx.pidnsNew ? 0 : target.pid, ino: target.ino.toString() },
  describe: (target) => {
    const comm = target.comm ? ` (${target.comm})` : '';
    const what = target.tgid !== 0 ? `thread ${target.tid} of ${target.tgid}` : `${target.pid}`;
    return `external ${target.zombie ? 'zombie ' : ''}${what}${comm}`;
  },
  example: (target) => ({ kind: 'external', pid: target.pid, zombie: target.zombie }),
};
