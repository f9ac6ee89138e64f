/**
 * Reaping the processes of an example tree after SIGKILL. A task is our child only once
 * its parent task has died (we are a child subreaper), so each pidfd is tried until it
 * can be reaped, or until it shows the process was reaped by someone else.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { closeQuiet, waitPidfd, WEXITED, WNOHANG } from '../../native/index.js';
import { isErrno, PcrError } from '../errors.js';
import { readPidfd } from '../procfs/index.js';

/** Reaps the process behind every pidfd; gives up after about 10 s. Closes the pidfds. */
export async function reapAll(pidfds: readonly number[]): Promise<void> {
  let left = [...pidfds];
  for (let round = 0; left.length > 0; round++) {
    left = left.filter((fd) => !tryReap(fd));
    if (left.length === 0) return;
    if (round > 5000) {
      left.forEach(closeQuiet);
      throw new PcrError('PCR_ERR_TIMEOUT', `example: ${left.length} processes were not reaped`);
    }
    await sleep(2);
  }
}

/** True once the process is reaped (by us now, or before by someone else); closes the pidfd. */
function tryReap(pidfd: number): boolean {
  try {
    if (waitPidfd(pidfd, WEXITED | WNOHANG) === null) return false;
  } catch (err) {
    if (!isErrno(err, 'ECHILD')) throw err;
    // Not our child (yet): its parent has not died, or someone else reaped it.
    if (readPidfd(process.pid, pidfd)?.pid !== -1) return false;
  }
  closeQuiet(pidfd);
  return true;
}
