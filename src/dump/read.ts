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
  withFdCopy,
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

/** A task that was live when frozen and is exiting or a zombie now was SIGKILLed meanwhile. */
function checkStillLive(w: WalkedTask): void {
  if (w.procState !== 'Z' && !isLive(w.pid)) {
    throw new PcrError('PCR_ERR_TASK_EXITED', `task ${w.pid} exited while it was being dumped`);
  }
}

export function readTask(w: WalkedTask): TaskRead {
  return whileFrozen(w.pid, () => {
    checkStillLive(w);
    const stat = readStat(w.pid);
    const status = readStatus(w.pid);
    const state = stateOf(w.procState);
    const zombie = state === 'zombie';
    const task: Omit<Task, 'fds'> = {
      pid: w.pid,
      ppid: stat.ppid,
      tgid: status.tgid,
      tids: zombie ? [w.pid] : readTids(w.pid),
      comm: readComm(w.pid),
      argv: zombie ? [] : readCmdline(w.pid),
      state,
      procState: w.procState,
      nsPids: status.nsPids,
    };
    if (zombie) task.exitStatus = stat.exitCode;
    const pidfds = zombie ? [] : readPidfds(w.pid);
    checkStillLive(w); // a zombie shows no fds: the list just read must be from a live task
    return { task, pidfds };
  });
}

/** pidfs inode of a task (live or zombie): pidfd_open + the pidfs file handle. */
export function taskIno(pid: number): bigint {
  const fd = whileFrozen(pid, () => {
    try {
      return pidfdOpen(pid);
    } catch (err) {
      throw new PcrError('PCR_ERR_NO_SUCH_PROCESS', `no such process: ${pid}`, { cause: err });
    }
  });
  try {
    return pidfsHandleIno(fd);
  } finally {
    closeQuiet(fd);
  }
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
    const st = readStat(pid);
    return st.state !== 'Z' && (st.flags & PF_EXITING) === 0;
  } catch {
    return false;
  }
}

/** `use` a pidfd_getfd copy of a frozen task's fd. */
function holderCopy<T>(holder: number, fd: number, use: (copy: number) => T): T {
  try {
    return withFdCopy(holder, fd, use);
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
