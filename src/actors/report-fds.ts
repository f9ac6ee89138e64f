/**
 * A worker's report of the pidfds it holds, read from /proc (the same files an outside
 * observer reads) for verification (compareReports): per fd its number, file flags
 * (O_CLOEXEC when F_GETFL says the file itself carries it, as a pidfs-handle open does),
 * close-on-exec bit, ino and fdinfo Pid; for a reaped target (Pid -1) the exit status
 * from PIDFD_GET_INFO; for a visible target its /proc state letter and, for a zombie, its
 * exit code (stat field 52: a zombie and a live process look alike in fdinfo); and its open-file class: the smallest (restored pid, fd) of the
 * whole restored tree that kcmp(KCMP_FILE) says is the same open file description
 * (two pidfd_open calls give one ino but different files: only kcmp tells them apart).
 */
import { getStatusFlags, kcmpFile, pidfdGetInfo, PIDFD_INFO } from '../../native/index.js';
import { FLAGS } from '../image/model.js';
import { readPidfds, readStat, type ProcPidfd } from '../procfs/index.js';
import type { FdReport, PidMap, ReportedFd } from '../plan/messages.js';

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

type Holder = [pid: number, fd: number];

/** Every pidfd of the tree's processes, grouped by ino, each group sorted by (pid, fd). */
function holdersByIno(pids: readonly number[]): Map<bigint, Holder[]> {
  const byIno = new Map<bigint, Holder[]>();
  for (const pid of [...pids].sort((a, b) => a - b)) {
    let fds: ProcPidfd[];
    try {
      fds = readPidfds(pid);
    } catch {
      continue; // exited meanwhile, or a zombie
    }
    for (const f of fds) {
      const list = byIno.get(f.ino) ?? [];
      list.push([pid, f.fd]);
      byIno.set(f.ino, list);
    }
  }
  return byIno;
}

export function fileClassOf(self: number, fd: number, candidates: readonly Holder[]): string {
  for (const [pid, other] of candidates) {
    try {
      if (kcmpFile(self, fd, pid, other) === 0) return `${pid}:${other}`;
    } catch {
      // that process or fd went away: not our class
    }
  }
  return `${self}:${fd}`;
}

/**
 * The FdReport of this process (task `dumpedPid`) within the tree of `pidMap`. Only
 * processes with a pid ≤ ours are read: a class key is the smallest (pid, fd) of its
 * file, and (our pid, fd) is always a candidate.
 */
export function reportFds(dumpedPid: number, pidMap: PidMap): FdReport {
  const self = process.pid;
  const own = readPidfds(self);
  const tree = new Set([self, ...pidMap.pids.map((p) => p.restored).filter((p) => p < self)]);
  const byIno = holdersByIno([...tree]);
  const fds: ReportedFd[] = own.map((f) => {
    const r: ReportedFd = {
      fd: f.fd,
      flags: f.cloexec ? f.flags | (getStatusFlags(f.fd) & FLAGS.O_CLOEXEC) : f.flags,
      cloexec: f.cloexec,
      ino: f.ino.toString(),
      targetPid: f.pid,
      fileClass: fileClassOf(self, f.fd, byIno.get(f.ino) ?? []),
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

/** Partitions `fds` of process `pid` into open-file-description classes with kcmp. */
export function sameFileClasses(pid: number, fds: readonly number[]): number[][] {
  const classes: number[][] = [];
  for (const fd of [...fds].sort((a, b) => a - b)) {
    const home = classes.find((c) => kcmpFile(pid, c[0]!, pid, fd) === 0);
    if (home) home.push(fd);
    else classes.push([fd]);
  }
  return classes;
}
