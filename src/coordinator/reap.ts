/**
 * Reaping what comes back to the coordinator. A worker that died before reaping its
 * children leaves them to the nearest subreaper, maybe our host; every process of the
 * restored tree is in the root worker's process group (the root is spawned with setsid).
 */
import { waitpid, WNOHANG } from '../../native/index.js';

/**
 * Reaps every pid we know of that is (or becomes) our child, SIGKILLing one still running
 * (our unreaped child: its pid cannot be reused), and every process of the workers'
 * process group `group`; leaves alone a pid that is not our child (ECHILD). Gives up
 * after `deadlineMs`.
 */
export async function reapReturned(
  pids: ReadonlySet<number>,
  group: number,
  deadlineMs: number,
): Promise<void> {
  const end = Date.now() + deadlineMs;
  const left = new Set(pids);
  // Every worker is done by now: anything left in their group is a straggler.
  if (group > 0) killQuiet(-group);
  while (Date.now() < end) {
    reapGroup(group);
    for (const pid of left) {
      try {
        const [got] = waitpid(pid, WNOHANG);
        if (got === pid) left.delete(pid);
        else killQuiet(pid);
      } catch {
        // ECHILD: not our child; gone, or still below a dying worker and on its way to us.
        if (!exists(pid)) left.delete(pid);
      }
    }
    // Checked before sleeping: after a clean teardown nothing is left at the first look.
    if (left.size === 0 && (group <= 0 || !exists(-group))) return;
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Reaps our exited children in the workers' process group (none if group is 0). */
function reapGroup(group: number): void {
  if (group <= 0) return;
  for (;;) {
    try {
      const [got] = waitpid(-group, WNOHANG);
      if (got <= 0) return;
    } catch {
      return; // ECHILD
    }
  }
}

function exists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function killQuiet(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone
  }
}
