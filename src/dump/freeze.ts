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
import { kill, ptraceInterrupt, ptraceSeize } from '../../native/index.js';
import { isErrno, PcrError } from '../errors.js';
import { readChildren, readStat, readStatus, readThreadStat, readTids } from '../procfs/index.js';
import { detachAll, waitForStops, type Seized } from './tracees.js';
import { TaskVanished, walkTree, type WalkedTask } from './walk.js';

const SIGSTOP = 19;
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
      const tasks = walkOnce(rootPid, walks > 0);
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
        for (const tid of t.tids ?? tidsOf(t.pid)) {
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

/**
 * One walk. The first (nothing frozen yet) reads the children of each task's leader
 * thread only: that finds the tasks to seize (threads other than the leader rarely fork),
 * and the walks after it, of frozen tasks, read the children of every thread and decide
 * (a task found only by them is seized and makes one more walk). Each task's thread ids
 * are listed once per walk and kept (WalkedTask.tids) for the seize and the read.
 */
function walkOnce(rootPid: number, allThreads: boolean): WalkedTask[] | null {
  let tids: number[] = [];
  try {
    return walkTree(rootPid, {
      readStat,
      // walkTree lists a task's threads just before it reads that task's children.
      readTids: (pid) => (tids = readTids(pid)),
      readChildren: (pid) => readChildren(pid, allThreads ? tids : [pid]),
    });
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

/** PF_KTHREAD (include/linux/sched.h): ptrace_attach refuses kernel threads, even to root. */
const PF_KTHREAD = 0x00200000;

function isKernelThread(tid: number): boolean {
  try {
    return (readStat(tid).flags & PF_KTHREAD) !== 0;
  } catch {
    return false;
  }
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
  if (isKernelThread(tid)) {
    return new PcrError(
      'PCR_ERR_PERMISSION',
      `${who} is a kernel thread: nobody may ptrace it, and it holds no pidfds`,
      { cause },
    );
  }
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
      // One thread per task: only SIGKILL takes a tracee out of its ptrace-stop, and it
      // wakes every thread of the thread group in the same kill() (complete_signal).
      const checked = new Set<number>();
      for (const [tid, s] of seized) {
        if (checked.has(s.pid)) continue;
        checked.add(s.pid);
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
