/**
 * restore --same-pids: every restored task (zombies included) must be at its dumped pid,
 * under its dumped parent. Checked from the pid map and from /proc (the restored process
 * at that pid, its parent in /proc/<pid>/stat). The pidfds' fdinfo `Pid:` are compared by
 * compare.ts through the pid map, which is then the identity. Thread ids are not kept
 * (docs/restore.md "Same pids"), so thread targets are not held to it.
 */
import { readStat } from '../procfs/read.js';
import type { Image } from '../model/image.js';
import type { PidMap } from '../protocol/messages.js';
import { restoredPid } from '../protocol/pidmap.js';
import type { Difference } from './compare.js';

/** Parent pid of `pid` from /proc/<pid>/stat; undefined when it is gone. */
function ppidOf(pid: number): number | undefined {
  try {
    return readStat(pid).ppid;
  } catch {
    return undefined;
  }
}

/**
 * With `pidnsNew` the pids are those of the new namespace: each task's innermost dumped
 * pid (last NSpid entry); the parents are then checked from inside, by the workers'
 * reports of their pidfds, not here (our /proc shows other pids).
 */
export function samePidDifferences(image: Image, pidMap: PidMap, pidnsNew = false): Difference[] {
  const out: Difference[] = [];
  for (const task of image.tasks) {
    const name = `task ${task.pid} (${task.comm})`;
    const want = pidnsNew ? (task.nsPids[task.nsPids.length - 1] ?? task.pid) : task.pid;
    const restored = restoredPid(pidMap, task.pid);
    if (restored !== want) {
      out.push({
        kind: 'pid',
        pid: task.pid,
        message: `${name}: restored at pid ${restored ?? '(none)'}, not at its dumped pid ${want}`,
      });
      continue;
    }
    if (task.pid === image.rootPid || pidnsNew) continue;
    const ppid = ppidOf(task.pid);
    if (ppid !== task.ppid) {
      out.push({
        kind: 'pid',
        pid: task.pid,
        message: `${name}: parent is ${ppid ?? '(no such process)'} in /proc, dumped parent ${task.ppid}`,
      });
    }
  }
  return out;
}
