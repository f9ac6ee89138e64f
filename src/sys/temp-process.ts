/**
 * The temporary process x of a dead-target group (CRIU's design, docs/restore.md), and
 * the zombie children: tiny children (native/tiny.ts) that never exec, made by clone3
 * and running a few system calls, then dying with exactly the recorded wait status. x's
 * only fd is its fd 0, one end of a socket pair whose other end only we hold: closing it
 * is the "die now" order, and if we die first x sees EOF and dies too, so it is never
 * left behind. After it died we reap it and CHECK how it died; it is never assumed.
 */
import {
  seqpacketPair,
  pidfdOpen,
  pidfdSendSignal,
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

/** x's comm, as ps and /proc/P/comm show it while it waits. */
export const TEMP_COMM = 'pcr-temp';

export interface TempProcess {
  pid: number;
  /** Our helper pidfd of x (for waiting and reaping), closed by finish/abort; -1 then. */
  pidfd: number;
  /** The wait status word x must die with. */
  status: number;
  /** Our end of x's stdin; closing it makes x die. -1 once closed. */
  control: number;
  /** Set while reapTemp waits: stops that wait (abortTemp calls it before closing). */
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

/** Starts x; it waits until `finishTemp` (or our death). */
export function startTemp(status: number): TempProcess {
  const death = deathFor(status);
  const [ours, theirs] = seqpacketPair();
  try {
    const x = spawnTiny({ death, waitOn: theirs, comm: TEMP_COMM, pidfd: true });
    return { pid: x.pid, pidfd: x.pidfd, status, control: ours };
  } catch (err) {
    closeQuiet(ours);
    throw err;
  } finally {
    closeQuiet(theirs);
  }
}

/** pidfd_open(x, flags) for one file of the group (flags: PIDFD_NONBLOCK, PIDFD_THREAD). */
export function openTempPidfd(temp: TempProcess, flags: number): number {
  return pidfdOpen(temp.pid, flags);
}

/** Closes an fd field once (a second close could hit a reused number) and marks it -1. */
function release(temp: TempProcess, field: 'pidfd' | 'control'): void {
  if (temp[field] >= 0) closeQuiet(temp[field]);
  temp[field] = -1;
}

/**
 * Tells x to die, waits (event loop free), reaps it; returns how it died (wait status).
 * The wait ends early if `signal` aborts or abortTemp is called. Without a signal no
 * AbortSignal listener is added: the first one costs a Node process ≈ 1 ms of CPU
 * (measured, docs/restore.md "Performance"), so the worker ends the wait by abortTemp.
 */
export function reapTemp(temp: TempProcess, signal?: AbortSignal): Promise<number> {
  release(temp, 'control');
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
        resolve(reapExited(temp));
      } catch (err) {
        reject(err as Error);
      }
    });
    temp.stopWaiting = stop;
    if (signal?.aborted) return onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Reaps x, which its pidfd says has exited; closes our pidfd of it. */
function reapExited(temp: TempProcess): number {
  try {
    const got = waitPidfd(temp.pidfd, WEXITED | WNOHANG);
    if (got === null) throw new PcrError('PCR_ERR_INTERNAL', `temp ${temp.pid}: not exited`);
    return got.status;
  } finally {
    release(temp, 'pidfd');
  }
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
 * Cleanup path: kill x, reap it (blocking: SIGKILL is prompt), close everything. Returns
 * the wait status if this call reaped x (undefined: it was reaped already).
 */
export function abortTemp(temp: TempProcess): number | undefined {
  temp.stopWaiting?.(new PcrError('PCR_ERR_RESTORE', `temp ${temp.pid} aborted`));
  // SIGKILL before closing its stdin: x must not die its recorded death on EOF first, so
  // that an aborted temp is told apart (status 9) in the trace.
  if (temp.pidfd >= 0) {
    try {
      pidfdSendSignal(temp.pidfd, SIGKILL);
    } catch {
      // already dead
    }
  }
  release(temp, 'control');
  if (temp.pidfd < 0) return undefined;
  let status: number | undefined;
  try {
    status = waitPidfd(temp.pidfd, WEXITED)?.status;
  } catch {
    // already reaped
  }
  release(temp, 'pidfd');
  return status;
}
