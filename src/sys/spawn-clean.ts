/**
 * posix_spawn with a controlled fd table: the child gets exactly its stdio, /dev/null
 * placeholders at the reserved fd numbers, and nothing else. Everything this process
 * opens is close-on-exec, but a worker's own placeholders (and fds a host program
 * inherited) are not, so the child closes every other fd: each number below the highest
 * target that is not a target, then everything above it (close_range). No fd table is
 * read: a temporary process (no reserved fds) costs no /proc read at all.
 */
import { readFileSync } from 'node:fs';
import { PcrError } from '../errors.js';
import {
  spawn as posixSpawn,
  spawnAt,
  openPath,
  dupAbove,
  closeQuiet,
  O_CLOEXEC,
} from '../../native/index.js';
import { spawnAtPid, type PidChoice } from './pid-choose.js';

const O_RDWR = 0o2;

export interface CleanSpawn {
  path: string;
  argv: readonly string[];
  env: Readonly<Record<string, string>>;
  /** This process's fds that become the child's 0, 1, 2; null gives /dev/null. */
  stdio: readonly [number | null, number | null, number | null];
  /** fd numbers taken in the child by /dev/null placeholders (they win over stdio). */
  reserve?: readonly number[];
  /** Start a new session (and process group) led by the child. */
  setsid?: boolean;
  /** The child must get this pid (restore --same-pids: sys/pid-choose.ts). */
  choosePid?: PidChoice;
  /** The child is the init of a new pid namespace, in a new mount namespace (clone3). */
  newPidNs?: boolean;
}

/** Soft RLIMIT_NOFILE, which a child inherits (Node raises it to the hard limit). */
function openFileLimit(): number {
  const m = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
  return m ? Number(m[1]) : Infinity;
}

/** A reserved fd the child could not hold (at or above RLIMIT_NOFILE), checked once. */
function checkReservable(reserve: readonly number[]): void {
  const highest = reserve[reserve.length - 1];
  if (highest === undefined) return;
  const limit = openFileLimit();
  const tooHigh = reserve.find((fd) => fd >= limit);
  if (tooHigh !== undefined) {
    throw new PcrError(
      'PCR_ERR_RESTORE',
      `fd ${tooHigh} cannot be reserved: the open file limit (RLIMIT_NOFILE) is ${limit}`,
    );
  }
}

/** Spawns the child and returns its pid. Node does not reap it: the caller must. */
export function spawnClean(req: CleanSpawn): number {
  const reserve = [...new Set(req.reserve ?? [])].sort((a, b) => a - b);
  checkReservable(reserve);
  // Every source fd lives above every target, so no dup2 clobbers a later source.
  const top = Math.max(2, ...reserve) + 1;
  const devnull = openPath('/dev/null', O_RDWR | O_CLOEXEC);
  const lifted: number[] = [];
  try {
    const nul = dupAbove(devnull, top);
    lifted.push(nul);
    const dup2: Array<[number, number]> = req.stdio.map((src, i): [number, number] => {
      if (src === null) return [nul, i];
      const copy = dupAbove(src, top);
      lifted.push(copy);
      return [copy, i];
    });
    for (const n of reserve) dup2.push([nul, n]);
    const targets = new Set(dup2.map(([, to]) => to));
    // Below `top` only the targets stay (a close of a number not open is ignored);
    // from `top` up, close_range takes the lifted sources and everything else.
    const close: number[] = [];
    for (let fd = 3; fd < top; fd++) if (!targets.has(fd)) close.push(fd);
    const how = {
      path: req.path,
      argv: req.argv,
      env: req.env,
      dup2,
      close,
      closeFrom: top,
      ...(req.setsid ? { setsid: true } : {}),
    };
    const choice = req.choosePid;
    if (choice) return spawnAtPid(choice, () => spawnAt({ ...how, pid: choice.pid }));
    if (req.newPidNs) return spawnAt({ ...how, newPidNs: true });
    return posixSpawn(how);
  } finally {
    closeQuiet(devnull);
    lifted.forEach(closeQuiet);
  }
}
