/**
 * Freezing a tree with ptrace, as CRIU does: PTRACE_SEIZE + PTRACE_INTERRUPT on every
 * thread of every live task, then waitpid(tid, __WALL) for the stop. Nothing the tasks'
 * parents can see changes (no SIGSTOP/SIGCONT in their waitid, no cgroup move, no
 * freezer cgroup). Zombies cannot be seized and never change. The walk is repeated
 * until a pass finds no new task or thread: a stopped task cannot fork or clone.
 *
 * Release: PTRACE_DETACH each thread (it resumes; a task that was in group-stop stays
 * stopped, the kernel re-arms the stop). --leave-stopped first queues SIGSTOP to each
 * process, so it enters group-stop as soon as it is detached (a signal given to
 * PTRACE_DETACH is ignored outside signal-delivery-stop, so kill(2) is the way).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import {
  __WALL,
  kill,
  ptraceDetach,
  ptraceInterrupt,
  ptraceSeize,
  waitpid,
  WNOHANG,
} from '../../native/index.js';
import { isErrno, PcrError } from '../errors.js';
import { readChildren, readStat, readStatus, readThreadStat, readTids } from '../procfs/index.js';
import { TaskVanished, walkTree, type WalkedTask } from './walk.js';

const SIGSTOP = 19;
const PTRACE_EVENT_STOP = 128;
const MAX_WALKS = 100;

export interface FreezeOptions {
  /** How long one thread may take to reach its ptrace-stop (default 10 s). */
  stopTimeoutMs?: number;
}

export interface FrozenTree {
  /** Pre-order; procState is the state letter before the freeze (T, Z, S, R …). */
  tasks: WalkedTask[];
  /**
   * Throws PCR_ERR_TASK_EXITED if a seized thread left its ptrace-stop (only SIGKILL
   * can do that): what was read may then be incomplete.
   */
  checkStillFrozen(): void;
  /** Detaches every thread; idempotent. */
  release(opts?: { leaveStopped?: boolean }): void;
}

interface Seized {
  pid: number;
  /** Signal to give back at detach (the tracee was in signal-delivery-stop). */
  signal: number;
  /** Its ptrace-stop was reported (PTRACE_DETACH works only on a stopped tracee). */
  stopped: boolean;
}

export async function freezeTree(rootPid: number, opts: FreezeOptions = {}): Promise<FrozenTree> {
  const seized = new Map<number, Seized>();
  /** State letter of each seized task as the walk saw it just before its first seize. */
  const before = new Map<number, string>();
  const known = new Set<number>();
  const timeoutMs = opts.stopTimeoutMs ?? 10_000;
  try {
    for (let walks = 0; ; walks++) {
      if (walks >= MAX_WALKS) {
        throw new PcrError('PCR_ERR_TIMEOUT', `tree of ${rootPid} kept changing: not frozen`);
      }
      const tasks = walkOnce(rootPid);
      if (tasks === null) continue;
      checkNotSelf(tasks);
      let changed = false;
      const fresh: number[] = [];
      for (const t of tasks) {
        if (!known.has(t.pid)) {
          known.add(t.pid);
          changed = true;
        }
        if (t.procState === 'Z') continue;
        for (const tid of tidsOf(t.pid)) {
          if (seized.has(tid)) continue;
          changed = true;
          if (!seize(t.pid, tid)) continue;
          if (!before.has(t.pid)) before.set(t.pid, t.procState);
          seized.set(tid, { pid: t.pid, signal: 0, stopped: false });
          fresh.push(tid);
        }
      }
      await waitForStops(fresh, seized, timeoutMs);
      if (!changed) {
        const final = tasks.map((t) => ({ ...t, procState: before.get(t.pid) ?? t.procState }));
        return frozen(final, seized);
      }
    }
  } catch (err) {
    try {
      detachAll(seized);
    } catch {
      // the first error is the one to report; a tracee left attached is freed when we exit
    }
    throw err;
  }
}

function walkOnce(rootPid: number): WalkedTask[] | null {
  try {
    return walkTree(rootPid, { readStat, readChildren });
  } catch (err) {
    if (err instanceof TaskVanished) return null; // not frozen yet: the tree may change
    throw err;
  }
}

function checkNotSelf(tasks: WalkedTask[]): void {
  if (tasks.some((t) => t.pid === process.pid)) {
    throw new PcrError(
      'PCR_ERR_USAGE',
      `the tree contains the dumper itself (pid ${process.pid}); dump a tree it is not part of`,
    );
  }
}

/** Thread ids of a task; none if it is gone (the next walk will not list it). */
function tidsOf(pid: number): number[] {
  try {
    return readTids(pid);
  } catch (err) {
    if (err instanceof PcrError && err.code === 'PCR_ERR_NO_SUCH_PROCESS') return [];
    throw err;
  }
}

/** PTRACE_SEIZE + PTRACE_INTERRUPT; false when the thread is gone or became a zombie. */
function seize(pid: number, tid: number): boolean {
  try {
    ptraceSeize(tid);
  } catch (err) {
    if (isErrno(err, 'ESRCH')) return false;
    if (isErrno(err, 'EPERM') || isErrno(err, 'EACCES')) {
      if (isZombie(pid)) return false;
      throw permissionError(pid, tid, err);
    }
    throw err;
  }
  ptraceInterrupt(tid);
  return true;
}

function isZombie(pid: number): boolean {
  try {
    return readStat(pid).state === 'Z';
  } catch {
    return false;
  }
}

function permissionError(pid: number, tid: number, cause: unknown): PcrError {
  let tracer = 0;
  try {
    tracer = readStatus(tid).tracerPid;
  } catch {
    // gone or unreadable: fall through to the general explanation
  }
  const who = tid === pid ? `task ${pid}` : `thread ${tid} of task ${pid}`;
  if (tracer !== 0) {
    return new PcrError(
      'PCR_ERR_PERMISSION',
      `${who} is already traced by process ${tracer}; a task has one tracer at a time`,
      { cause },
    );
  }
  return new PcrError(
    'PCR_ERR_PERMISSION',
    `cannot ptrace ${who}: EPERM; dumping needs ptrace access to every task ` +
      `(same uid and a dumpable process, or CAP_SYS_PTRACE)`,
    { cause },
  );
}

/**
 * waitpid(tid, __WALL|WNOHANG) on every interrupted thread until each has reported its
 * stop (or its end); sleeps 1 ms only when no thread made progress.
 */
async function waitForStops(tids: number[], seized: Map<number, Seized>, timeoutMs: number) {
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
          `thread ${tid} of task ${pid} did not stop in ${timeoutMs} ms`,
        );
      }
      await sleep(1);
    }
  }
}

/** One WNOHANG wait: true once the thread reported its stop, or ended. */
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

/** State letter of a thread ('t' in a ptrace-stop); '' once it is gone. */
function threadState(pid: number, tid: number): string {
  try {
    return readThreadStat(pid, tid).state;
  } catch {
    return '';
  }
}

function frozen(tasks: WalkedTask[], seized: Map<number, Seized>): FrozenTree {
  let released = false;
  return {
    tasks,
    checkStillFrozen() {
      for (const [tid, s] of seized) {
        if (threadState(s.pid, tid) !== 't') {
          throw new PcrError(
            'PCR_ERR_TASK_EXITED',
            `task ${s.pid} exited while it was being dumped`,
          );
        }
      }
    },
    release({ leaveStopped = false } = {}) {
      if (released) return;
      released = true;
      if (leaveStopped) {
        for (const pid of new Set([...seized.values()].map((s) => s.pid))) {
          try {
            kill(pid, SIGSTOP);
          } catch (err) {
            if (!isErrno(err, 'ESRCH')) throw err;
          }
        }
      }
      detachAll(seized);
    },
  };
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
function detachAll(seized: Map<number, Seized>): void {
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
