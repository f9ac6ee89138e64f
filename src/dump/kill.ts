/**
 * `dump --kill` (docs/dump.md): once the image is written and synced, the dumped tree is
 * SIGKILLed while it is still frozen (it never runs again after the dump, as with
 * `criu dump`), then the dump waits until every pid and thread id of the image is free,
 * so that `restore --same-pids` can follow.
 */
import { PcrError, isErrno } from '../errors.js';
import { kill, waitpid, __WALL, WNOHANG } from '../../native/index.js';
import type { Image } from '../model/image.js';
import { procExists, readComm, readStat } from '../procfs/read.js';

/** Not node:timers/promises: loading it costs a dump ≈ 0.7 ms of CPU. */
const sleep = (ms: number): Promise<void> => new Promise((done) => setTimeout(done, ms));

const SIGKILL = 9;
/** Init reaps orphans only every 1–2 s on this machine kind: be generous. */
export const KILL_WAIT_MS = 10_000;

/** SIGKILLs every live task of the image (a zombie is already dead). */
export function killTree(image: Image): void {
  for (const task of image.tasks) {
    if (task.state === 'zombie') continue;
    try {
      kill(task.pid, SIGKILL);
    } catch (err) {
      if (!isErrno(err, 'ESRCH')) throw err;
    }
  }
}

/** Who still holds `pid`: "a zombie, not reaped by its parent P (comm)" or its comm. */
function describeHolder(pid: number): string {
  try {
    const { comm, state, ppid } = readStat(pid);
    if (state === 'Z') {
      let parent = '?';
      try {
        parent = readComm(ppid);
      } catch {
        // gone meanwhile
      }
      return `${comm}, a zombie its parent ${ppid} (${parent}) has not reaped`;
    }
    return `${comm}, state ${state}`;
  } catch {
    return 'gone meanwhile';
  }
}

/**
 * A task that died while we traced it is reported to us first; until we collect that
 * report its real parent cannot reap it. Detaching collects most (dump/tracees.ts), but
 * the init of a pid namespace exits only after every other process in it was reaped, so
 * its report comes later: collect whatever is due (ECHILD: not ours, fine).
 */
function collectTracedExits(ids: readonly number[]): void {
  for (const id of ids) {
    try {
      waitpid(id, __WALL | WNOHANG);
    } catch {
      // not traced by us (any more)
    }
  }
}

/** Waits until no process or thread holds any pid or tid of the image. */
export async function waitTreeGone(image: Image, timeoutMs = KILL_WAIT_MS): Promise<void> {
  const ids = [...new Set(image.tasks.flatMap((t) => [t.pid, ...t.tids]))];
  const end = Date.now() + timeoutMs;
  for (;;) {
    collectTracedExits(ids);
    const held = ids.filter(procExists);
    if (held.length === 0) return;
    if (Date.now() > end) {
      const first = held[0]!;
      throw new PcrError(
        'PCR_ERR_TIMEOUT',
        `dump --kill: the image is written, but pid ${first} (${describeHolder(first)}) was still in use ${timeoutMs} ms after the kill` +
          (held.length > 1 ? ` (and ${held.length - 1} more)` : ''),
      );
    }
    await sleep(5);
  }
}
