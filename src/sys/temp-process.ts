/**
 * The temporary process x of a dead-target group (CRIU's design, docs/restore.md), and
 * the zombie children: tiny children (native/tiny.ts) that never exec, made by clone3
 * and running a few system calls, then dying with exactly the recorded wait status.
 * x dies at once, like a zombie child, and holds no fd: what the group needs is only its
 * pid and its pidfs inode, and an unreaped child keeps both. Its creator opens the
 * group's pidfds to the zombie (pidfd_open of an exited, unreaped process works), then
 * reaps it in kill-temp and CHECKs how it died; it is never assumed. If we die first,
 * x goes to our subreaper like any orphan and is reaped there.
 */
import {
  pidfdOpen,
  pidfdSendSignal,
  seqpacketPair,
  spawnTiny,
  waitPidfd,
  closeQuiet,
  WEXITED,
  WNOHANG,
  type TinyDeath,
} from '../../native/index.js';
import { PcrError } from '../errors.js';
import { spawnAtPid, type PidChoice } from './pid-choose.js';
import { watchReadable } from './readiness.js';

const SIGKILL = 9;
/** Signals whose default action does not kill (CHLD CONT STOP TSTP TTIN TTOU URG WINCH). */
const NON_FATAL = new Set([17, 18, 19, 20, 21, 22, 23, 28]);

/** x's comm, as ps and /proc/P/comm show it (a zombie keeps its comm until reaped). */
export const TEMP_COMM = 'pcr-temp';

export interface TempProcess {
  pid: number;
  /** Our helper pidfd of x (for waiting and reaping), closed by finish/abort; -1 then. */
  pidfd: number;
  /** The wait status word x must die with. */
  status: number;
  /** Set while reapTemp waits: stops that wait (abortTemp calls it first). */
  stopWaiting?: (reason: Error) => void;
}

export const describeStatus = (w: number): string =>
  (w & 0x7f) === 0 ? `exit ${w >> 8}` : `signal ${w & 0x7f}${w & 0x80 ? ' (core)' : ''}`;

/** How a process dies with wait status `w` (exit code or signal), or a PcrError if none can. */
export function deathFor(w: number): TinyDeath {
  const sig = w & 0x7f;
  if (sig === 0 && (w & 0xff) === 0 && w >> 8 <= 255 && w >= 0) return { exitCode: w >> 8 };
  if (sig > 0 && sig < 65 && w >> 8 === 0 && !NON_FATAL.has(sig)) {
    // The core bit appears only if a core file is really written: not reproduced.
    if (w & 0x80) throw unsupported(w, 'a core dump cannot be reproduced without writing one');
    return { signal: sig };
  }
  throw unsupported(w, 'not a status a process can die with');
}

const unsupported = (w: number, why: string): PcrError =>
  new PcrError('PCR_ERR_UNSUPPORTED', `dead target with wait status ${w}: ${why}`);

/**
 * A process that dies at once with wait status `status` and is never reaped by us until
 * teardown: a zombie child. Its comm is `comm` (PR_SET_NAME; 'sh' when none is given, as
 * the /bin/sh zombies of earlier versions had).
 */
export function spawnZombie(status: number, comm?: string, choosePid?: PidChoice): number {
  const how = { death: deathFor(status), comm: comm ?? 'sh' };
  if (choosePid) return spawnAtPid(choosePid, () => spawnTiny({ ...how, pid: choosePid.pid }).pid);
  return spawnTiny(how).pid;
}

/**
 * Starts x: it dies at once with `status` and stays our unreaped child (a zombie) until
 * reapTemp or abortTemp. Normally it is dead before become-creator opens its pidfds.
 */
export function startTemp(status: number): TempProcess {
  const x = spawnTiny({ death: deathFor(status), comm: TEMP_COMM, pidfd: true });
  return { pid: x.pid, pidfd: x.pidfd, status };
}

/**
 * A tiny child like x that stays alive, waiting on its stdin, until `control` (the other
 * end of that socket pair, ours) is closed, then dies with `status`: `pidfd-cr check`
 * probes a live child (ptrace, kcmp against its fd 0) before letting it die. Close
 * `control` before reapTemp; abortTemp kills it if it still waits.
 */
export function startWaitingTemp(status: number): { temp: TempProcess; control: number } {
  const death = deathFor(status);
  const [ours, theirs] = seqpacketPair();
  try {
    const x = spawnTiny({ death, waitOn: theirs, comm: TEMP_COMM, pidfd: true });
    return { temp: { pid: x.pid, pidfd: x.pidfd, status }, control: ours };
  } catch (err) {
    closeQuiet(ours);
    throw err;
  } finally {
    closeQuiet(theirs);
  }
}

/**
 * pidfd_open(x, flags) for one file of the group (flags: PIDFD_NONBLOCK, PIDFD_THREAD).
 * Opening by pid is exact: x is our child and nobody reaps it before kill-temp (only
 * its parent can; the worker's waitpid(-1) runs only in teardown, after abortTemp, or on
 * a start-up failure, before any x), so its pid cannot be reused until we reap it, dead
 * or alive. Before GO nothing else opens a pidfd of x by pid: its pid is not in the
 * image, only we know it.
 */
export function openTempPidfd(temp: TempProcess, flags: number): number {
  return pidfdOpen(temp.pid, flags);
}

/** Closes our pidfd of x once (a second close could hit a reused number), marks it -1. */
function release(temp: TempProcess): void {
  if (temp.pidfd >= 0) closeQuiet(temp.pidfd);
  temp.pidfd = -1;
}

/**
 * Reaps x (waitid through its pidfd) and returns how it died (wait status). x normally
 * died long before, and this returns at once; if it has not yet (no CPU yet on a loaded
 * machine) the wait leaves the event loop free until its pidfd is readable. The wait
 * ends early if `signal` aborts or abortTemp is called. Without a signal no AbortSignal
 * listener is added: the first one costs a Node process ≈ 1 ms of CPU (measured,
 * docs/restore.md "Performance"), so the worker ends the wait by abortTemp.
 */
export function reapTemp(temp: TempProcess, signal?: AbortSignal): Promise<number> {
  if (signal?.aborted) {
    abortTemp(temp);
    return Promise.reject(
      signal.reason instanceof Error
        ? signal.reason
        : new PcrError('PCR_ERR_RESTORE', 'reapTemp aborted'),
    );
  }
  try {
    const status = reapIfExited(temp);
    if (status !== undefined) return Promise.resolve(status);
  } catch (err) {
    return Promise.reject(err as Error);
  }
  return new Promise<number>((resolve, reject) => {
    const stop = (reason: Error): void => {
      watch.stop();
      temp.stopWaiting = undefined;
      signal?.removeEventListener('abort', onAbort);
      reject(reason);
    };
    const onAbort = (): void => {
      stop(
        signal?.reason instanceof Error
          ? signal.reason
          : new PcrError('PCR_ERR_RESTORE', 'reapTemp aborted'),
      );
      abortTemp(temp);
    };
    const watch = watchReadable(temp.pidfd, () => {
      watch.stop();
      temp.stopWaiting = undefined;
      signal?.removeEventListener('abort', onAbort);
      try {
        const status = reapIfExited(temp);
        if (status === undefined)
          throw new PcrError('PCR_ERR_INTERNAL', `temp ${temp.pid}: not exited`);
        resolve(status);
      } catch (err) {
        release(temp);
        reject(err as Error);
      }
    });
    temp.stopWaiting = stop;
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Reaps x if it has exited (then closes our pidfd of it) and returns its wait status;
 * undefined while it still runs. Throws if it cannot be waited for (our pidfd closed,
 * or x reaped by someone else: then our pidfd is closed too).
 */
function reapIfExited(temp: TempProcess): number | undefined {
  if (temp.pidfd < 0) throw new PcrError('PCR_ERR_INTERNAL', `temp ${temp.pid}: reaped already`);
  let got;
  try {
    got = waitPidfd(temp.pidfd, WEXITED | WNOHANG);
  } catch (err) {
    release(temp);
    throw err;
  }
  if (got === null) return undefined;
  release(temp);
  return got.status;
}

/** reapTemp, then CHECK that x died with the recorded status. */
export async function finishTemp(temp: TempProcess, signal?: AbortSignal): Promise<void> {
  const status = await reapTemp(temp, signal);
  if (status !== temp.status) {
    throw new PcrError(
      'PCR_ERR_RESTORE',
      `temporary process ${temp.pid} died with ${describeStatus(status)} ` +
        `(status ${status}), expected ${describeStatus(temp.status)} (status ${temp.status})`,
    );
  }
}

/**
 * Cleanup path: reap x and close our pidfd of it. x is normally dead already and the
 * status returned is the recorded one; only an x still running (it never got a CPU yet)
 * is SIGKILLed first (blocking wait: SIGKILL is prompt), so that an aborted one is told
 * apart (status 9) in the trace. Returns the wait status if this call reaped x
 * (undefined: it was reaped already).
 */
export function abortTemp(temp: TempProcess): number | undefined {
  temp.stopWaiting?.(new PcrError('PCR_ERR_RESTORE', `temp ${temp.pid} aborted`));
  if (temp.pidfd < 0) return undefined;
  let status: number | undefined;
  try {
    status = waitPidfd(temp.pidfd, WEXITED | WNOHANG)?.status;
    if (status === undefined) {
      pidfdSendSignal(temp.pidfd, SIGKILL);
      status = waitPidfd(temp.pidfd, WEXITED)?.status;
    }
  } catch {
    // already reaped (by a subreaper, after our pidfd's process was gone)
  }
  release(temp);
  return status;
}
