/**
 * Readers of /proc for one process. Side-effect free: they only read. A process that
 * is gone gives PCR_ERR_NO_SUCH_PROCESS, a denied read PCR_ERR_PERMISSION (errors.ts).
 * Synchronous on purpose: /proc reads never block on I/O and a dump reads hundreds of
 * small files in a row.
 */
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import {
  isPidfdLink,
  parseCmdline,
  parseFdinfo,
  parsePidList,
  parseStat,
  parseStatus,
  splitCloexec,
  type Stat,
  type Status,
} from './parse.js';
import { isGone, procReadError } from './errors.js';

const PROC = '/proc';

function readProc(pid: number, rel: string): string {
  const path = `${PROC}/${pid}/${rel}`;
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw procReadError(pid, path, err);
  }
}

function listProc(pid: number, rel: string): string[] {
  const path = `${PROC}/${pid}/${rel}`;
  try {
    return readdirSync(path);
  } catch (err) {
    throw procReadError(pid, path, err);
  }
}

const numericSorted = (names: string[]): number[] =>
  names
    .filter((n) => /^[0-9]+$/.test(n))
    .map(Number)
    .sort((a, b) => a - b);

export function readStat(pid: number): Stat {
  return parseStat(readProc(pid, 'stat'));
}

export function readStatus(pid: number): Status {
  return parseStatus(readProc(pid, 'status'));
}

/** Stat of one thread (its own state letter). */
export function readThreadStat(pid: number, tid: number): Stat {
  return parseStat(readProc(pid, `task/${tid}/stat`));
}

/** Status of one thread (TracerPid is per thread). */
export function readThreadStatus(pid: number, tid: number): Status {
  return parseStatus(readProc(pid, `task/${tid}/status`));
}

/** Thread ids of a process, leader first, then ascending. */
export function readTids(pid: number): number[] {
  const tids = numericSorted(listProc(pid, 'task'));
  return tids.includes(pid) ? [pid, ...tids.filter((t) => t !== pid)] : tids;
}

/**
 * Children of every thread of the process (a child belongs to the thread that forked
 * it, so /proc/P/task/P/children alone misses some), or of the threads `tids` only
 * (default: all, listed now). Threads that end between the readdir and the read are
 * skipped. Ascending, no duplicates.
 */
export function readChildren(pid: number, tids: readonly number[] = readTids(pid)): number[] {
  const kids = new Set<number>();
  for (const tid of tids) {
    let text: string;
    try {
      text = readFileSync(`${PROC}/${pid}/task/${tid}/children`, 'utf8');
    } catch (err) {
      if (isGone(err)) continue;
      throw procReadError(pid, `${PROC}/${pid}/task/${tid}/children`, err);
    }
    for (const c of parsePidList(text)) kids.add(c);
  }
  return [...kids].sort((a, b) => a - b);
}

export function readCmdline(pid: number): string[] {
  return parseCmdline(readProc(pid, 'cmdline'));
}

export function readComm(pid: number): string {
  return readProc(pid, 'comm').replace(/\n$/, '');
}

/** One pidfd of a process, as /proc shows it. */
export interface ProcPidfd {
  fd: number;
  /** f_flags of the open file description, without O_CLOEXEC. */
  flags: number;
  /** The per-fd close-on-exec bit. */
  cloexec: boolean;
  /** pidfs inode of the target: equal inos ⇔ same target process or thread. */
  ino: bigint;
  /** Target pid as our procfs sees it: -1 once reaped, 0 when not visible from here. */
  pid: number;
  nsPids: number[];
}

/**
 * The pidfds of a process, sorted by fd. Other fds are skipped silently, and so are fds
 * closed between the readdir and the reads. A zombie has no fds (empty list).
 */
export function readPidfds(pid: number): ProcPidfd[] {
  const out: ProcPidfd[] = [];
  for (const fd of numericSorted(listProc(pid, 'fd'))) {
    const entry = readPidfd(pid, fd);
    if (entry) out.push(entry);
  }
  return out;
}

/** One fd if it is a pidfd; null if it is something else or is gone. */
export function readPidfd(pid: number, fd: number): ProcPidfd | null {
  let link: string;
  let text: string;
  try {
    link = readlinkSync(`${PROC}/${pid}/fd/${fd}`);
    if (!isPidfdLink(link)) return null;
    text = readFileSync(`${PROC}/${pid}/fdinfo/${fd}`, 'utf8');
  } catch (err) {
    if (isGone(err)) return null;
    throw procReadError(pid, `${PROC}/${pid}/fd/${fd}`, err);
  }
  const info = parseFdinfo(text);
  return {
    fd,
    ...splitCloexec(info.flags),
    ino: info.ino,
    pid: info.pid ?? 0,
    nsPids: info.nsPids ?? [],
  };
}

/** Does /proc/P exist (alive or zombie)? */
export function procExists(pid: number): boolean {
  try {
    readFileSync(`${PROC}/${pid}/stat`);
    return true;
  } catch {
    return false;
  }
}
