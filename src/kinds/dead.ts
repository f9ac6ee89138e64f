/**
 * dead: a reaped process or thread (fdinfo Pid -1). All files of one dead ino are made in
 * the dead phase from one temporary process x that dies with the recorded status (the
 * `temp` strategy, also used for external targets restored as dead).
 */
import { PcrError } from '../errors.js';
import { checkNoTaskPid, fail, sightedTarget } from './common.js';
import type { OpenStrategy, TargetKindModule } from './kind.js';

export const temp: OpenStrategy<'temp'> = {
  name: 'temp',
  wireNumber: 4,
  wireFields: { groupId: 'int' },
  pidfdFlags: 0,
  open: (how, as, ops) => {
    const x = ops.tempPid(how.groupId);
    if (x === undefined) {
      throw new PcrError('PCR_ERR_INTERNAL', `no temporary process for group ${how.groupId}`);
    }
    return ops.openPid(x, as);
  },
};

export const dead: TargetKindModule<'dead'> = {
  name: 'dead',
  protoNumber: 3,
  owns: ['exitStatus'],
  strategies: [temp],
  recognise: (s) => {
    if (s.pidfd.pid !== -1) return undefined;
    const info = s.probes.dead(s.holder, s.pidfd.fd);
    const t = sightedTarget(s, 'dead', { nsPids: [], exitCgroupId: info.cgroupId });
    if (info.exitStatus !== undefined) t.exitStatus = info.exitStatus;
    return t;
  },
  // Reaped (pid -1): it names no live process, so pid reuse cannot make two.
  names: () => undefined,
  validate: (target, where) => {
    checkNoTaskPid(target, where);
    if (target.pid !== -1) fail(`${where}.pid`, `${target.pid}: a reaped target has pid -1`);
    if (target.tid !== 0) fail(`${where}.tid`, `is set (${target.tid}) on a dead target`);
  },
  plan: (target, _file, ctx) => {
    if (target.exitStatus === undefined) {
      return { refusal: `dead target (ino ${target.ino}) has no recorded exit status` };
    }
    const why = ctx.unreproducibleStatus(target.exitStatus);
    if (why !== undefined) return { refusal: `dead target (ino ${target.ino}): ${why}` };
    return { dead: true, exitStatus: target.exitStatus, source: 'recorded' };
  },
  expect: (target) => ({ alive: false, exitStatus: target.exitStatus }),
  describe: (target, ctx) =>
    `dead, ${target.exitStatus === undefined ? 'status unknown' : ctx.endText(target.exitStatus)}`,
  example: (target) => ({ kind: 'dead', exitStatus: target.exitStatus ?? -1 }),
};
