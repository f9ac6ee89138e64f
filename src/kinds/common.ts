/** Small helpers shared by the kind modules (not a kind itself). */
import { ImageError } from '../errors.js';
import { makeTarget, type Target, type TargetKind } from '../model/image.js';
import type { Sighting } from './kind.js';

export function fail(where: string, message: string): never {
  throw new ImageError(where, message);
}

/** The target of a sighted pidfd: its ino, pid and NSpid, plus the kind's own fields. */
export function sightedTarget(s: Sighting, kind: TargetKind, fields: Partial<Target> = {}): Target {
  const p = s.pidfd;
  return makeTarget({ ino: p.ino, kind, pid: p.pid, nsPids: p.nsPids, ...fields });
}

/** A target outside the tree names no task. */
export function checkNoTaskPid(target: Target, where: string): void {
  if (target.taskPid !== 0) {
    fail(`${where}.task_pid`, `is set (${target.taskPid}) on a ${target.kind} target`);
  }
}
