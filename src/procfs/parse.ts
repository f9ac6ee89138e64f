/**
 * Pure parsers of /proc text: fdinfo, stat, status. No I/O here; the readers in
 * read.ts feed them. Unknown lines are ignored so newer kernels do not break them.
 */
import { PcrError } from '../errors.js';
import { FLAGS } from '../model/image.js';

export interface Fdinfo {
  pos: number;
  /** Full f_flags as the kernel prints them (octal in the text), O_CLOEXEC included. */
  flags: number;
  mntId: number;
  ino: bigint;
  /** Pid of a pidfd's target as this procfs sees it: -1 once reaped, 0 if invisible. */
  pid?: number;
  /** The target's pid at every namespace level from this procfs's level down. */
  nsPids?: number[];
}

/** Splits "key:\tvalue" lines into a map; lines without a colon are skipped. */
function keyValues(text: string): Map<string, string> {
  const map = new Map<string, string>();
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) map.set(line.slice(0, colon), line.slice(colon + 1).trim());
  }
  return map;
}

function intList(value: string | undefined): number[] | undefined {
  if (value === undefined) return undefined;
  return value.length === 0 ? [] : value.split(/\s+/).map((s) => Number.parseInt(s, 10));
}

function required(map: Map<string, string>, key: string, what: string): string {
  const v = map.get(key);
  if (v === undefined) throw new PcrError('PCR_ERR_UNSUPPORTED', `${what}: no '${key}:' line`);
  return v;
}

/** /proc/P/fdinfo/N. `flags` is octal; `ino` is a 64-bit counter (bigint). */
export function parseFdinfo(text: string): Fdinfo {
  const kv = keyValues(text);
  const info: Fdinfo = {
    pos: Number(kv.get('pos') ?? 0),
    flags: Number.parseInt(required(kv, 'flags', 'fdinfo'), 8),
    mntId: Number(kv.get('mnt_id') ?? 0),
    ino: BigInt(required(kv, 'ino', 'fdinfo')),
  };
  const pid = kv.get('Pid');
  if (pid !== undefined) info.pid = Number.parseInt(pid, 10);
  const nsPids = intList(kv.get('NSpid'));
  if (nsPids !== undefined) info.nsPids = nsPids;
  return info;
}

/** What readlink(/proc/P/fd/N) gives for a pidfd (also on pidfs kernels). */
export const PIDFD_LINK = 'anon_inode:[pidfd]';

export function isPidfdLink(link: string): boolean {
  return link === PIDFD_LINK;
}

/** f_flags without the per-fd close-on-exec bit, and that bit on its own. */
export function splitCloexec(flags: number): { flags: number; cloexec: boolean } {
  return { flags: flags & ~FLAGS.O_CLOEXEC, cloexec: (flags & FLAGS.O_CLOEXEC) !== 0 };
}

export interface Stat {
  pid: number;
  comm: string;
  /** One letter: R S D T t Z X I … */
  state: string;
  ppid: number;
  pgrp: number;
  session: number;
  /** Field 9: the task's PF_* flags (include/linux/sched.h). */
  flags: number;
  numThreads: number;
  /** Field 52: the wait status word once the task exited (zombie); 0 while alive. */
  exitCode: number;
}

/**
 * /proc/P/stat. comm (field 2) may contain spaces and parentheses: it runs from the
 * first '(' to the LAST ')'; the numbered fields follow that last ')'.
 */
export function parseStat(text: string): Stat {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open)
    throw new PcrError('PCR_ERR_INTERNAL', `stat: no '(comm)' in '${text.slice(0, 60)}'`);
  const rest = text
    .slice(close + 1)
    .trim()
    .split(/\s+/);
  const field = (n: number): string => {
    const v = rest[n - 3];
    if (v === undefined) throw new PcrError('PCR_ERR_UNSUPPORTED', `stat: no field ${n}`);
    return v;
  };
  return {
    pid: Number.parseInt(text.slice(0, open), 10),
    comm: text.slice(open + 1, close),
    state: field(3),
    ppid: Number(field(4)),
    pgrp: Number(field(5)),
    session: Number(field(6)),
    flags: Number(field(9)),
    numThreads: Number(field(20)),
    exitCode: rest.length >= 50 ? Number(field(52)) : 0,
  };
}

export interface Status {
  name: string;
  state: string;
  tgid: number;
  pid: number;
  ppid: number;
  /** 0 when nobody ptraces the task. */
  tracerPid: number;
  nsPids: number[];
  nsTgids: number[];
}

/** /proc/P/status (or /proc/P/task/T/status). */
export function parseStatus(text: string): Status {
  const kv = keyValues(text);
  const num = (key: string): number => Number.parseInt(required(kv, key, 'status'), 10);
  return {
    name: kv.get('Name') ?? '',
    state: (kv.get('State') ?? '').charAt(0),
    tgid: num('Tgid'),
    pid: num('Pid'),
    ppid: num('PPid'),
    tracerPid: num('TracerPid'),
    nsPids: intList(kv.get('NSpid')) ?? [num('Pid')],
    nsTgids: intList(kv.get('NStgid')) ?? [num('Tgid')],
  };
}

/** The effective capability mask of a /proc/P/status (CapEff, hex); 0 when absent. */
export function parseCapEff(text: string): bigint {
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(text);
  return m ? BigInt(`0x${m[1]}`) : 0n;
}

/** /proc/P/task/T/children: space-separated pids, possibly with a trailing space. */
export function parsePidList(text: string): number[] {
  const t = text.trim();
  return t.length === 0 ? [] : t.split(/\s+/).map((s) => Number.parseInt(s, 10));
}

/** /proc/P/cmdline: NUL-separated argv (empty for zombies and kernel threads). */
export function parseCmdline(text: string): string[] {
  if (text.length === 0) return [];
  const parts = text.split('\0');
  if (parts[parts.length - 1] === '') parts.pop();
  return parts;
}
