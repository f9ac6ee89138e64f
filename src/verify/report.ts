/**
 * Verification reads from /proc (the same files an outside observer reads), in two parts.
 * A worker reports the pidfds it holds (reportFds): per fd its number, file flags
 * (O_CLOEXEC when F_GETFL says the file itself carries it, as a pidfs-handle open does),
 * close-on-exec bit, ino and fdinfo Pid; for a reaped target (Pid -1) the exit status
 * from PIDFD_GET_INFO; for a visible target its /proc state letter and, for a zombie, its
 * exit code (stat field 52: a zombie and a live process look alike in fdinfo). The
 * coordinator then gives every reported fd its open-file class (fileClasses): the
 * smallest (restored pid, fd) of the whole restored tree that kcmp(KCMP_FILE) says is
 * the same open file description (two pidfd_open calls give one ino but different files:
 * only kcmp tells them apart). Done once, by the coordinator, from the reports (fd, ino)
 * and kcmp, instead of every worker reading the /proc fd tables of the others (O(N²)
 * reads); kcmp then needs ptrace access only to descendants.
 */
import { getStatusFlags, kcmpFile, pidfdGetInfo, PIDFD_INFO } from '../../native/index.js';
import { FLAGS } from '../model/image.js';
import { isErrno } from '../errors.js';
import { readPidfds, readStat } from '../procfs/index.js';
import { openFileClasses, type FileCompare } from '../sys/file-classes.js';
import type { FdReport, ReportedFd } from '../protocol/messages.js';

/** Exit status of a reaped target through our own pidfd, when the kernel kept one. */
function exitStatusOf(fd: number): number | undefined {
  try {
    const info = pidfdGetInfo(fd, PIDFD_INFO.EXIT);
    return info.hasExit ? info.exitCode : undefined;
  } catch {
    return undefined;
  }
}

/** /proc/P/stat state of a visible target; the exit code only for a zombie. */
function targetStateOf(pid: number): Pick<ReportedFd, 'targetState' | 'targetExitCode'> {
  try {
    const stat = readStat(pid);
    return stat.state === 'Z'
      ? { targetState: stat.state, targetExitCode: stat.exitCode }
      : { targetState: stat.state };
  } catch {
    return {}; // not visible from our procfs, or reaped meanwhile
  }
}

/**
 * kcmp(KCMP_FILE) for classes of live workers' fds. A process or fd that went away is
 * not the same file (ordered by (pid, fd)); anything else (EPERM under Yama
 * ptrace_scope, ENOSYS under seccomp) would turn every fd into its own class and show as
 * differences: it fails, naming kcmp.
 */
const kcmpOrGone: FileCompare = (pid1, fd1, pid2, fd2) => {
  try {
    return kcmpFile(pid1, fd1, pid2, fd2);
  } catch (err) {
    if (!isErrno(err, 'ESRCH') && !isErrno(err, 'EBADF')) throw err;
    return pid1 < pid2 || (pid1 === pid2 && fd1 < fd2) ? 1 : 2;
  }
};

/**
 * The FdReport of this process (task `dumpedPid`): its own pidfds only, `fileClass`
 * left empty for the coordinator (fileClasses, withFileClasses).
 */
export function reportFds(dumpedPid: number): FdReport {
  const self = process.pid;
  const fds: ReportedFd[] = readPidfds(self).map((f) => {
    const r: ReportedFd = {
      fd: f.fd,
      flags: f.cloexec ? f.flags | (getStatusFlags(f.fd) & FLAGS.O_CLOEXEC) : f.flags,
      cloexec: f.cloexec,
      ino: f.ino.toString(),
      targetPid: f.pid,
      fileClass: '',
    };
    if (f.pid === -1) {
      const status = exitStatusOf(f.fd);
      if (status !== undefined) r.exitStatus = status;
    } else if (f.pid > 0) {
      Object.assign(r, targetStateOf(f.pid));
    }
    return r;
  });
  return { pid: dumpedPid, restoredPid: self, fds };
}

/**
 * The open-file class of every reported pidfd, keyed `"<restored pid>:<fd>"`: the
 * smallest (pid, fd) holding the same open file description, by kcmp(KCMP_FILE) between
 * the fds of one ino (dump/files.ts openFileClasses; the ino is the one the worker read
 * from its /proc/self/fdinfo). Each class is settled by the kernel: no /proc table is
 * read again.
 */
export function fileClasses(
  reports: readonly { restoredPid: number; fds: readonly { fd: number; ino: string }[] }[],
): Map<string, string> {
  // In (pid, fd) order, a class's first member is its smallest.
  const held = reports
    .flatMap((r) => r.fds.map((f) => ({ pid: r.restoredPid, fd: f.fd, ino: BigInt(f.ino) })))
    .sort((a, b) => a.pid - b.pid || a.fd - b.fd);
  const ids = openFileClasses(held, kcmpOrGone);
  const firstOf = new Map<number, string>();
  const classes = new Map<string, string>();
  held.forEach((h, i) => {
    const key = `${h.pid}:${h.fd}`;
    if (!firstOf.has(ids[i]!)) firstOf.set(ids[i]!, key);
    classes.set(key, firstOf.get(ids[i]!)!);
  });
  return classes;
}

/** `report` (of restored pid `restoredPid`) with each fd's class from `classes`. */
export function withFileClasses(
  report: FdReport,
  restoredPid: number,
  classes: ReadonlyMap<string, string>,
): FdReport {
  return {
    ...report,
    fds: report.fds.map((f) => ({
      ...f,
      fileClass: classes.get(`${restoredPid}:${f.fd}`) ?? `${restoredPid}:${f.fd}`,
    })),
  };
}
