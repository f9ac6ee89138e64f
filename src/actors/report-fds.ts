/**
 * A worker's report of the pidfds it holds, read from its own /proc/self (the same files
 * an outside observer reads), for verification (compareReports): per fd its number,
 * file flags, close-on-exec bit, ino and fdinfo Pid; for a reaped target (Pid -1) the
 * exit status from PIDFD_GET_INFO; and which fds share one open file description (kcmp).
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { kcmpFile, pidfdGetInfo, PIDFD_INFO } from '../../native/index.js';
import { FLAGS } from '../image/model.js';

export interface ReportedFd {
  fd: number;
  /** f_flags without O_CLOEXEC. */
  flags: number;
  cloexec: boolean;
  ino: bigint;
  /** fdinfo Pid: the target's pid, -1 once reaped. */
  pid: number;
  /** Reaped target: wait status from PIDFD_GET_INFO (EXIT), when the kernel has one. */
  exitStatus?: number;
}

export interface OwnReport {
  pid: number;
  tids: number[];
  fds: ReportedFd[];
  /** Groups of fd numbers that are one open file description (kcmp), each sorted. */
  sameFile: number[][];
}

const PIDFD_LINK = 'anon_inode:[pidfd]';

function field(text: string, key: string): string | undefined {
  const m = new RegExp(`^${key}:\\s*(.*)$`, 'm').exec(text);
  return m?.[1];
}

function readOne(fd: number): ReportedFd | null {
  let link: string;
  let info: string;
  try {
    link = readlinkSync(`/proc/self/fd/${fd}`);
    if (link !== PIDFD_LINK) return null;
    info = readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
  } catch {
    return null; // closed meanwhile (e.g. the directory fd of readdir)
  }
  const allFlags = Number.parseInt(field(info, 'flags') ?? '0', 8);
  const entry: ReportedFd = {
    fd,
    flags: allFlags & ~FLAGS.O_CLOEXEC,
    cloexec: (allFlags & FLAGS.O_CLOEXEC) !== 0,
    ino: BigInt(field(info, 'ino') ?? '0'),
    pid: Number.parseInt(field(info, 'Pid') ?? '0', 10),
  };
  if (entry.pid === -1) {
    try {
      const exit = pidfdGetInfo(fd, PIDFD_INFO.EXIT);
      if (exit.hasExit) entry.exitStatus = exit.exitCode;
    } catch {
      // no exit information kept for this target
    }
  }
  return entry;
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

export function reportOwnPidfds(): OwnReport {
  const fds = readdirSync('/proc/self/fd')
    .map(Number)
    .sort((a, b) => a - b)
    .map(readOne)
    .filter((e): e is ReportedFd => e !== null);
  const tids = readdirSync('/proc/self/task').map(Number);
  return {
    pid: process.pid,
    tids: tids.sort((a, b) => a - b),
    fds,
    sameFile: sameFileClasses(
      process.pid,
      fds.map((f) => f.fd),
    ),
  };
}
