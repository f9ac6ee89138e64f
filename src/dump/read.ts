/**
 * Reading a frozen tree: per task its identity, state and pidfds (procfs), and the
 * kernel facts the classification needs (task inos, dead targets' exit info).
 */
import {
  closeQuiet,
  getStatusFlags,
  kcmpFile,
  pidfdGetInfo,
  pidfdOpen,
  pidfsHandleIno,
  PIDFD_INFO,
  withFdCopyVia,
} from '../../native/index.js';
import { PcrError, SyscallError } from '../errors.js';
import type { Task, TaskState } from '../model/image.js';
import {
  readCmdline,
  readComm,
  readPidfds,
  readStat,
  readStatus,
  readTids,
  type ProcPidfd,
  type Stat,
} from '../procfs/index.js';
import type { DeadInfo, ExternalInfo, TargetProbes } from './classify.js';
import type { FileCompare } from '../sys/file-classes.js';
import type { WalkedTask } from './walk.js';

export interface TaskRead {
  task: Omit<Task, 'fds'>;
  pidfds: ProcPidfd[];
}

function stateOf(letter: string): TaskState {
  if (letter === 'Z') return 'zombie';
  if (letter === 'T') return 'stopped';
  return 'running';
}

/** A task of the frozen tree vanishing is PCR_ERR_TASK_EXITED (only SIGKILL can do it). */
function whileFrozen<T>(pid: number, read: () => T): T {
  try {
    return read();
  } catch (err) {
    if (err instanceof PcrError && err.code === 'PCR_ERR_NO_SUCH_PROCESS') {
      throw new PcrError('PCR_ERR_TASK_EXITED', `task ${pid} exited while it was being dumped`, {
        cause: err,
      });
    }
    throw err;
  }
}

/**
 * One task of the frozen tree. Its stat is read last: it gives ppid, comm (the same text
 * as /proc/P/comm) and a zombie's exit status, and shows that the task was still live
 * after its fds were read (a zombie shows no fds: the list must be from a live task; a
 * task killed earlier is not live then either). The thread ids are the freeze's last walk's
 * (a frozen task cannot clone, and a thread cannot end but by SIGKILL, which
 * checkStillFrozen sees).
 */
export function readTask(w: WalkedTask): TaskRead {
  try {
    return readFrozenTask(w);
  } catch (err) {
    // A task killed meanwhile may refuse its /proc reads (its mm is gone) before its stat shows it.
    if (err instanceof PcrError && err.code === 'PCR_ERR_PERMISSION' && !isLive(w.pid)) {
      throw new PcrError('PCR_ERR_TASK_EXITED', `task ${w.pid} exited while it was being dumped`, {
        cause: err,
      });
    }
    throw err;
  }
}

function readFrozenTask(w: WalkedTask): TaskRead {
  return whileFrozen(w.pid, () => {
    const status = readStatus(w.pid);
    const state = stateOf(w.procState);
    const zombie = state === 'zombie';
    const argv = zombie ? [] : readCmdline(w.pid);
    const pidfds = zombie ? [] : readPidfds(w.pid);
    const stat = readStat(w.pid);
    if (!zombie && !liveStat(stat)) {
      throw new PcrError('PCR_ERR_TASK_EXITED', `task ${w.pid} exited while it was being dumped`);
    }
    const task: Omit<Task, 'fds'> = {
      pid: w.pid,
      ppid: stat.ppid,
      tgid: status.tgid,
      tids: zombie ? [w.pid] : (w.tids ?? readTids(w.pid)),
      comm: stat.comm,
      argv,
      state,
      procState: w.procState,
      nsPids: status.nsPids,
    };
    if (zombie) task.exitStatus = stat.exitCode;
    return { task, pidfds };
  });
}

/**
 * pidfds of the frozen tree's tasks, opened once each while `withTaskPidfds` runs (for the
 * task's ino, and for every pidfd_getfd of its fds) instead of once per use.
 */
let taskPidfds: Map<number, number> | undefined;

/** Runs `read` with one pidfd per task, opened on first use and closed when it returns. */
export function withTaskPidfds<T>(read: () => T): T {
  const outer = taskPidfds;
  taskPidfds = new Map();
  try {
    return read();
  } finally {
    for (const fd of taskPidfds.values()) closeQuiet(fd);
    taskPidfds = outer;
  }
}

/** `use` a pidfd of `pid` (the held one inside withTaskPidfds, else one of its own). */
function withTaskPidfd<T>(pid: number, use: (pidfd: number) => T): T {
  let fd = taskPidfds?.get(pid);
  if (fd !== undefined) return use(fd);
  fd = pidfdOpen(pid);
  if (taskPidfds) {
    taskPidfds.set(pid, fd);
    return use(fd);
  }
  try {
    return use(fd);
  } finally {
    closeQuiet(fd);
  }
}

/** pidfs inode of a task (live or zombie): pidfd_open + the pidfs file handle. */
export function taskIno(pid: number): bigint {
  return whileFrozen(pid, () => {
    try {
      return withTaskPidfd(pid, pidfsHandleIno);
    } catch (err) {
      if (err instanceof SyscallError && err.syscall === 'pidfd_open') {
        throw new PcrError('PCR_ERR_NO_SUCH_PROCESS', `no such process: ${pid}`, { cause: err });
      }
      throw err;
    }
  });
}

/**
 * A frozen task killed meanwhile (only SIGKILL can) loses its fd table before it is a
 * zombie: pidfd_getfd and kcmp on it then fail with ESRCH or EBADF. Such a failure is
 * PCR_ERR_TASK_EXITED naming the task no longer live; any other stays what it is.
 */
function exitedMeanwhile(err: unknown, pids: number[]): unknown {
  if (!(err instanceof SyscallError) || !['ESRCH', 'EBADF'].includes(err.errnoName)) return err;
  const gone = pids.find((pid) => !isLive(pid));
  if (gone === undefined) return err;
  return new PcrError('PCR_ERR_TASK_EXITED', `task ${gone} exited while it was being dumped`, {
    cause: err,
  });
}

/** PF_EXITING (include/linux/sched.h): set by do_exit before exit_files drops the fd table. */
const PF_EXITING = 0x4;

/**
 * Not a zombie and not exiting. A SIGKILLed task shows its old state letter for a while
 * after its fd table is gone (it becomes Z only at exit_notify), but PF_EXITING is set
 * before that (seen on CI under load: pidfd_getfd ESRCH while the state was still S).
 */
function isLive(pid: number): boolean {
  try {
    return liveStat(readStat(pid));
  } catch {
    return false;
  }
}

const liveStat = (st: Stat): boolean => st.state !== 'Z' && (st.flags & PF_EXITING) === 0;

/** `use` a pidfd_getfd copy of a frozen task's fd. */
function holderCopy<T>(holder: number, fd: number, use: (copy: number) => T): T {
  try {
    return withTaskPidfd(holder, (pidfd) => withFdCopyVia(pidfd, fd, use));
  } catch (err) {
    throw exitedMeanwhile(err, [holder]);
  }
}

/** A copy of the holder's pidfd (pidfd_getfd), asked PIDFD_GET_INFO with EXIT. */
function deadInfo(holder: number, fd: number): DeadInfo {
  return holderCopy(holder, fd, (copy) => {
    const info = pidfdGetInfo(copy, PIDFD_INFO.EXIT | PIDFD_INFO.CGROUPID);
    const out: DeadInfo = { cgroupId: info.cgroupId };
    if (info.hasExit) out.exitStatus = info.exitCode;
    return out;
  });
}

function externalInfo(pid: number): ExternalInfo {
  try {
    const status = readStatus(pid);
    return { comm: readComm(pid), zombie: readStat(pid).state === 'Z', tgid: status.tgid };
  } catch (err) {
    if (err instanceof PcrError && err.code === 'PCR_ERR_NO_SUCH_PROCESS') {
      // It ended between the fdinfo read and now: the next dump will see it dead.
      throw new PcrError(
        'PCR_ERR_TASK_EXITED',
        `external target ${pid} exited while the tree was being dumped; dump again`,
        { cause: err },
      );
    }
    throw err;
  }
}

/** F_GETFL of a pidfd_getfd copy of the holder's fd: the file's f_flags as they are. */
const fileFlags = (holder: number, fd: number): number => holderCopy(holder, fd, getStatusFlags);

/** kcmp(KCMP_FILE) between two frozen tasks' fds. */
export const frozenKcmp: FileCompare = (pid1, fd1, pid2, fd2) => {
  try {
    return kcmpFile(pid1, fd1, pid2, fd2);
  } catch (err) {
    throw exitedMeanwhile(err, [pid1, pid2]);
  }
};

export const kernelProbes: TargetProbes = {
  dead: deadInfo,
  external: externalInfo,
  fileFlags,
};
