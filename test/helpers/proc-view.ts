/**
 * Looking at processes from the outside, through /proc, for the runtime's system tests:
 * fd links, fdinfo fields, stat fields, children. Reading another process's fds needs
 * ptrace access (tests run as the same uid as the processes they start).
 */
import { readFileSync, readlinkSync, readdirSync, existsSync } from 'node:fs';
import { getStatusFlags, withFdCopy } from '../../native/index.js';

export interface FdinfoView {
  flags: number;
  ino: bigint;
  pid: number;
  nsPids: number[];
}

export function fdLink(pid: number, fd: number): string | null {
  try {
    return readlinkSync(`/proc/${pid}/fd/${fd}`);
  } catch {
    return null;
  }
}

export function fdNumbers(pid: number): number[] {
  return readdirSync(`/proc/${pid}/fd`)
    .map(Number)
    .sort((a, b) => a - b);
}

/**
 * The fd numbers of `pid` once they equal `want`, or the last ones read after `ms`: a
 * program just exec'd (e.g. /bin/sleep loading its locale) briefly holds files of its own
 * at the lowest free numbers.
 */
export async function settledFdNumbers(
  pid: number,
  want: readonly number[],
  ms = 5000,
): Promise<number[]> {
  const end = Date.now() + ms;
  let got = fdNumbers(pid);
  while (got.join() !== want.join() && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 20));
    got = fdNumbers(pid);
  }
  return got;
}

export function fdinfo(pid: number, fd: number): FdinfoView {
  const text = readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
  const get = (k: string): string => new RegExp(`^${k}:\\s*(.*)$`, 'm').exec(text)?.[1] ?? '';
  return {
    flags: Number.parseInt(get('flags'), 8),
    ino: BigInt(get('ino') || '0'),
    pid: Number.parseInt(get('Pid') || '0', 10),
    nsPids: get('NSpid')
      .split(/\s+/)
      .filter((s) => s.length > 0)
      .map(Number),
  };
}

/**
 * The open file's own f_flags: F_GETFL of a pidfd_getfd copy. Unlike fdinfo it shows
 * O_CLOEXEC only when the file carries it (opened by pidfs handle with O_CLOEXEC).
 */
export const fileFlags = (pid: number, fd: number): number => withFdCopy(pid, fd, getStatusFlags);

/** /proc/P/stat fields after the comm: index 0 is field 3 (state). */
export function statFields(pid: number): string[] | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return text
      .slice(text.lastIndexOf(')') + 2)
      .trim()
      .split(' ');
  } catch {
    return null;
  }
}

export const procState = (pid: number): string | null => statFields(pid)?.[0] ?? null;
export const parentOf = (pid: number): number | null => {
  const f = statFields(pid);
  return f ? Number(f[1]) : null;
};
/** /proc/P/stat field 52: exit code (wait status word) of a zombie. */
export const exitCodeField = (pid: number): number | null => {
  const f = statFields(pid);
  return f ? Number(f[49]) : null;
};

export const comm = (pid: number): string => readFileSync(`/proc/${pid}/comm`, 'utf8').trim();

export const exists = (pid: number): boolean => existsSync(`/proc/${pid}`);

/** Direct children of `pid` (all threads' children lists). */
export function childrenOf(pid: number): number[] {
  const out = new Set<number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    const text = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim();
    for (const c of text.split(/\s+/).filter((s) => s.length > 0)) out.add(Number(c));
  }
  return [...out].sort((a, b) => a - b);
}

/** Every descendant of `pid`, depth first. */
export function descendantsOf(pid: number): number[] {
  let children: number[];
  try {
    children = childrenOf(pid);
  } catch {
    return []; // it exited while we walked
  }
  return children.flatMap((c) => [c, ...descendantsOf(c)]);
}
