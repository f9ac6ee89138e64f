/**
 * What each pidfs inode of the tree refers to (docs/dump.md, "Classification"). Pure:
 * the facts about the tree and the probes that read the kernel are passed in.
 *
 * - fdinfo Pid -1: the target was reaped → dead (exit status from PIDFD_INFO_EXIT).
 * - Pid of a task of the tree → in-tree-alive or in-tree-zombie (a live pid number
 *   names one process, and the tree is frozen; the task's own ino must match).
 * - Pid of a non-leader thread of a task → thread.
 * - any other Pid → external (a thread if its Tgid differs).
 * - Pid 0: the target lives in a pid namespace the dumper cannot see → refused.
 */
import { PcrError } from '../errors.js';
import { makeTarget, type Target } from '../model/image.js';
import type { ProcPidfd } from '../procfs/index.js';

export interface TreeFacts {
  /** Inode of every task of the tree, by pid. */
  taskIno: ReadonlyMap<number, bigint>;
  zombies: ReadonlySet<number>;
  /** Owner pid of every non-leader thread of the tree, by tid. */
  threadOwner: ReadonlyMap<number, number>;
}

export interface DeadInfo {
  /** Wait status from PIDFD_INFO_EXIT; undefined when the kernel had none. */
  exitStatus?: number;
  cgroupId: bigint;
}

export interface ExternalInfo {
  comm: string;
  zombie: boolean;
  /** Thread-group leader of the target (= its pid unless it is a non-leader thread). */
  tgid: number;
}

export interface TargetProbes {
  /** PIDFD_GET_INFO(EXIT) on a copy of fd `fd` of `holder`. */
  dead(holder: number, fd: number): DeadInfo;
  external(pid: number): ExternalInfo;
  /** F_GETFL of a copy of fd `fd` of `holder` (pidfd_getfd): the file's own f_flags. */
  fileFlags?(holder: number, fd: number): number;
}

const blank = (p: ProcPidfd): Target =>
  makeTarget({ ino: p.ino, kind: 'external', pid: p.pid, nsPids: p.nsPids });

export function classifyTarget(
  holder: number,
  p: ProcPidfd,
  tree: TreeFacts,
  probes: TargetProbes,
): Target {
  const where = `task ${holder} fd ${p.fd}`;
  if (p.pid === -1) {
    const info = probes.dead(holder, p.fd);
    const t: Target = { ...blank(p), kind: 'dead', nsPids: [], exitCgroupId: info.cgroupId };
    if (info.exitStatus !== undefined) t.exitStatus = info.exitStatus;
    return t;
  }
  if (p.pid === 0) {
    throw new PcrError(
      'PCR_ERR_UNSUPPORTED',
      `${where}: its target is in a pid namespace this dumper cannot see (fdinfo Pid 0)`,
    );
  }
  const taskIno = tree.taskIno.get(p.pid);
  if (taskIno !== undefined) {
    if (taskIno !== p.ino) {
      throw new PcrError(
        'PCR_ERR_INTERNAL',
        `${where}: target pid ${p.pid} is a task of the tree, but ino ${p.ino} is not its ino ${taskIno}`,
      );
    }
    const kind = tree.zombies.has(p.pid) ? 'in-tree-zombie' : 'in-tree-alive';
    return { ...blank(p), kind, taskPid: p.pid };
  }
  const owner = tree.threadOwner.get(p.pid);
  if (owner !== undefined) return { ...blank(p), kind: 'thread', taskPid: owner, tid: p.pid };
  const ext = probes.external(p.pid);
  const thread = ext.tgid !== p.pid;
  return {
    ...blank(p),
    comm: ext.comm,
    zombie: ext.zombie,
    ...(thread ? { tid: p.pid, tgid: ext.tgid } : {}),
  };
}
