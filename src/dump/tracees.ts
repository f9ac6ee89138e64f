/**
 * Bookkeeping of seized threads (tracees): collecting their ptrace-stops, and detaching
 * them again on every path. A tracee can be detached only while it is in a ptrace-stop
 * (PTRACE_DETACH fails with ESRCH otherwise).
 */
import { __WALL, ptraceDetach, waitpid, WNOHANG } from '../../native/index.js';
import { isErrno, PcrError } from '../errors.js';
import { readStat } from '../procfs/index.js';

/** Not node:timers/promises: loading it costs a dump ≈ 0.7 ms of CPU. */
const sleep = (ms: number): Promise<void> => new Promise((done) => setTimeout(done, ms));

const PTRACE_EVENT_STOP = 128;

export interface Seized {
  pid: number;
  /** Signal to give back at detach (the tracee was in signal-delivery-stop). */
  signal: number;
  /** Its ptrace-stop was reported (PTRACE_DETACH works only on a stopped tracee). */
  stopped: boolean;
}

/**
 * waitpid(tid, __WALL|WNOHANG) on every interrupted thread until each has reported its
 * stop (or its end); sleeps 1 ms only when no thread made progress.
 */
export async function waitForStops(tids: number[], seized: Map<number, Seized>, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  let pending = tids;
  while (pending.length > 0) {
    const before = pending.length;
    pending = pending.filter((tid) => !reported(tid, seized));
    if (pending.length === before) {
      if (Date.now() > deadline) {
        const tid = pending[0]!;
        const pid = seized.get(tid)!.pid;
        throw new PcrError(
          'PCR_ERR_TIMEOUT',
          `thread ${tid} of task ${pid} did not stop in ${timeoutMs} ms${ownChildHint(pid)}`,
        );
      }
      await sleep(1);
    }
  }
}

/** One WNOHANG wait: true once the thread reported its stop, or ended. */
/**
 * A traced child's stops are reported to any waitpid() of its parent: Node's libuv reaps
 * child_process children with waitpid(pid) on SIGCHLD and takes the report we wait for.
 */
function ownChildHint(pid: number): string {
  let ppid = 0;
  try {
    ppid = readStat(pid).ppid;
  } catch {
    return '';
  }
  return ppid === process.pid
    ? ` (it is a child of this process: if it was started with child_process, Node's waitpid may have taken its stop report; start it with posix_spawn or dump it from another process)`
    : '';
}

function reported(tid: number, seized: Map<number, Seized>): boolean {
  const s = seized.get(tid)!;
  const [got, status] = waitpid(tid, __WALL | WNOHANG);
  if (got !== tid) return false;
  if (noteStop(s, status)) return true;
  seized.delete(tid); // it ended while we waited
  if (tid === s.pid) {
    throw new PcrError('PCR_ERR_TASK_EXITED', `task ${s.pid} exited while it was being frozen`);
  }
  return true;
}

/** Records a reported ptrace-stop; false if the status is not a stop (the thread ended). */
function noteStop(s: Seized, status: number): boolean {
  if ((status & 0xff) !== 0x7f) return false;
  // Event 0 is a signal-delivery-stop: that signal is given back at detach.
  if (status >> 16 !== PTRACE_EVENT_STOP) s.signal = (status >> 8) & 0xff;
  s.stopped = true;
  return true;
}

const pause = new Int32Array(new SharedArrayBuffer(4));

/** An interrupted thread whose stop was not reported yet: wait up to 2 s, synchronously. */
function settle(tid: number, s: Seized): void {
  for (let i = 0; i < 2000 && !s.stopped; i++) {
    try {
      const [got, status] = waitpid(tid, __WALL | WNOHANG);
      if (got === tid && !noteStop(s, status)) return;
    } catch {
      return;
    }
    if (!s.stopped) Atomics.wait(pause, 0, 0, 1);
  }
}

/**
 * A tracee that dies while traced (SIGKILL) is reported to its tracer first; its real
 * parent can reap it only after the tracer collected that report. Collect it, waiting
 * up to 2 s for a thread that is still on its way out.
 */
function collectExit(tid: number): void {
  for (let i = 0; i < 2000; i++) {
    try {
      const [got, status] = waitpid(tid, __WALL | WNOHANG);
      if (got === tid && (status & 0xff) !== 0x7f) return;
    } catch {
      return; // ECHILD: not ours (any more)
    }
    Atomics.wait(pause, 0, 0, 1);
  }
}

/**
 * Detaches every seized thread; a thread that died meanwhile has its exit collected.
 * Leaders go last: a dead leader is reported only once its other threads are collected.
 */
export function detachAll(seized: Map<number, Seized>): void {
  let first: unknown;
  const leadersLast = [...seized].sort(
    ([a, x], [b, y]) => Number(a === x.pid) - Number(b === y.pid),
  );
  for (const [tid, s] of leadersLast) {
    if (!s.stopped) settle(tid, s);
    try {
      ptraceDetach(tid, s.signal);
    } catch (err) {
      if (isErrno(err, 'ESRCH')) collectExit(tid);
      else first ??= err;
    }
  }
  seized.clear();
  if (first) throw first;
}
