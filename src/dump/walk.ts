/**
 * The tree below a root: every descendant, live or zombie, found through
 * /proc/P/task/T/children of every thread. Pre-order, children by ascending pid.
 */
import { PcrError } from '../errors.js';
import type { Stat } from '../procfs/index.js';

export interface WalkedTask {
  pid: number;
  ppid: number;
  /** The /proc/P/stat state letter when the walk saw it. */
  procState: string;
  /**
   * Thread ids, leader first, as the walk listed them (not for a zombie; absent when the
   * walk's readers did not list them).
   */
  tids?: number[];
}

/** What the walk reads; injected so the walk can be tested on a fake /proc. */
export interface WalkReaders {
  readStat(pid: number): Stat;
  readChildren(pid: number): number[];
  /**
   * The task's thread ids, when the walk should record them (WalkedTask.tids); called
   * just before readChildren of the same task.
   */
  readTids?(pid: number): number[];
}

export class TaskVanished extends Error {
  constructor(readonly pid: number) {
    super(`task ${pid} vanished during the walk`);
  }
}

/**
 * Walks from `rootPid`. A task that vanishes between two reads throws TaskVanished (the
 * caller walks again: an unfrozen tree may change). The root missing is
 * PCR_ERR_NO_SUCH_PROCESS.
 */
export function walkTree(rootPid: number, r: WalkReaders): WalkedTask[] {
  const out: WalkedTask[] = [];
  const seen = new Set<number>();
  const visit = (pid: number, isRoot: boolean): void => {
    if (seen.has(pid)) return;
    seen.add(pid);
    const st = readOrVanish(() => r.readStat(pid), pid, isRoot);
    const task: WalkedTask = { pid, ppid: st.ppid, procState: st.state };
    out.push(task);
    if (st.state === 'Z') return; // a zombie's children were reparented already
    if (r.readTids) task.tids = readOrVanish(() => r.readTids!(pid), pid, isRoot);
    for (const child of readOrVanish(() => r.readChildren(pid), pid, isRoot)) visit(child, false);
  };
  visit(rootPid, true);
  return out;
}

function readOrVanish<T>(read: () => T, pid: number, isRoot: boolean): T {
  try {
    return read();
  } catch (err) {
    if (err instanceof PcrError && err.code === 'PCR_ERR_NO_SUCH_PROCESS') {
      if (isRoot) throw err;
      throw new TaskVanished(pid);
    }
    throw err;
  }
}
