/**
 * Choosing a child's pid (restore --same-pids, docs/restore.md "Same pids"): under a
 * system-wide flock, write N-1 to /proc/sys/kernel/ns_last_pid and posix_spawn at once
 * (the write is posix_spawn's `beforeSpawn`: one synchronous sequence, no JavaScript
 * and no event loop turn between them), check the pid the child got, and retry a bounded
 * number of times when another process won the race. Right after each spawn the pid
 * cursor is parked above every pid the restore still wants (`park`), so that the
 * threads Node starts in the new worker a moment later, and every other new process,
 * take pids above them instead of the next wanted one.
 *
 * Nothing here forks a Node process: the child is made by posix_spawn (CLONE_VFORK +
 * exec in glibc), so no JavaScript runs in a copy of this multi-threaded process.
 */
import { closeSync, existsSync, openSync, readFileSync, writeSync, constants } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PcrError } from '../errors.js';
import {
  spawn as posixSpawn,
  tryLockExclusive,
  unlock,
  kill,
  waitpid,
} from '../../native/index.js';

export const NS_LAST_PID = '/proc/sys/kernel/ns_last_pid';
/** One lock for every restore of the machine: spawns that choose pids are serialised. */
export const PID_LOCK_PATH = existsSync('/run/lock')
  ? '/run/lock/pidfd-cr-pids.lock'
  : join(tmpdir(), 'pidfd-cr-pids.lock');
/** How many times a spawn is tried when other processes take the pid first. */
export const MAX_PID_ATTEMPTS = 5;
/** How long a spawn waits for another restore's pid lock. */
const LOCK_WAIT_MS = 10_000;

/**
 * TEST HOOK (docs/restore.md "Same pids"): `PCR_PID_RACE=<pid>:<n>` makes the first `n`
 * spawns at `<pid>` lose a real race: between the ns_last_pid write and the spawn, a
 * throwaway `/bin/true` is spawned and takes the pid. Read by whoever spawns (the
 * coordinator for the root, workers for the rest). Not meant for anything else.
 */
export const PID_RACE_ENV = 'PCR_PID_RACE';

export interface PidRace {
  pid: number;
  times: number;
}

export function parsePidRace(text: string | undefined): PidRace | undefined {
  if (!text) return undefined;
  const m = /^(\d+):(\d+)$/.exec(text);
  if (!m) throw new PcrError('PCR_ERR_USAGE', `${PID_RACE_ENV} '${text}' is not <pid>:<times>`);
  return { pid: Number(m[1]), times: Number(m[2]) };
}

/** Who holds pid `pid` now: its comm (a thread: `thread of P (comm)`); undefined if free. */
export function holderOf(pid: number): string | undefined {
  try {
    const comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
    const tgid = /^Tgid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    if (tgid !== undefined && Number(tgid) !== pid) return `a thread of process ${tgid} (${comm})`;
    return `${comm}`;
  } catch {
    // /proc/<pid> gone between the reads, or never there
    return existsSync(`/proc/${pid}`) ? '(unknown)' : undefined;
  }
}

export function pidTakenError(pid: number, what: string, holder: string): PcrError {
  return new PcrError(
    'PCR_ERR_PID_TAKEN',
    `${what} cannot get its pid ${pid}: it is in use by ${holder}`,
  );
}

export interface WantedPid {
  pid: number;
  /** How the pid is named in a refusal, e.g. "task 4242 (sleep)". */
  what: string;
}

/**
 * Pre-flight, before anything is started: the caller may choose pids (CAP_CHECKPOINT_
 * RESTORE or CAP_SYS_ADMIN, which writing ns_last_pid needs), every wanted pid is within
 * pid_max and free (no process or thread holds it). Throws the first refusal.
 */
export function checkPidsAvailable(wanted: readonly WantedPid[]): void {
  checkCanChoosePids();
  const pidMax = Number(readFileSync('/proc/sys/kernel/pid_max', 'utf8'));
  for (const w of wanted) {
    if (w.pid <= 1 || w.pid >= pidMax) {
      throw new PcrError(
        'PCR_ERR_PID_TAKEN',
        `${w.what} cannot get its pid ${w.pid}: pids here run from 2 to ${pidMax - 1} (pid_max)`,
      );
    }
    const holder = holderOf(w.pid);
    if (holder !== undefined) throw pidTakenError(w.pid, w.what, holder);
  }
}

const CAP_SYS_ADMIN = 21n;
const CAP_CHECKPOINT_RESTORE = 40n;

/** Effective capabilities of this process (/proc/self/status CapEff). */
function effectiveCaps(): bigint {
  const m = /^CapEff:\s+([0-9a-f]+)/m.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? BigInt(`0x${m[1]}`) : 0n;
}

export function canChoosePids(): boolean {
  const caps = effectiveCaps();
  return ((caps >> CAP_CHECKPOINT_RESTORE) & 1n) === 1n || ((caps >> CAP_SYS_ADMIN) & 1n) === 1n;
}

export function checkCanChoosePids(): void {
  if (!canChoosePids()) {
    throw new PcrError(
      'PCR_ERR_PID_PRIVILEGE',
      `--same-pids needs CAP_CHECKPOINT_RESTORE (or CAP_SYS_ADMIN, or root) to choose pids through ${NS_LAST_PID}; this process (uid ${process.getuid?.() ?? '?'}) has neither`,
    );
  }
}

function writeLastPid(fd: number, value: number): void {
  // pwrite at 0: numeric sysctls ignore writes at a non-zero file position.
  writeSync(fd, String(value), 0, 'latin1');
}

/** Moves the pid cursor: the next new process or thread gets a pid above `last`. */
export function parkCursor(last: number): void {
  withPidLock((fd) => writeLastPid(fd, last));
}

function withPidLock<T>(body: (lastPidFd: number) => T): T {
  const lock = openSync(PID_LOCK_PATH, constants.O_RDONLY | constants.O_CREAT, 0o644);
  try {
    const end = Date.now() + LOCK_WAIT_MS;
    const pause = new Int32Array(new SharedArrayBuffer(4));
    while (!tryLockExclusive(lock)) {
      if (Date.now() > end) {
        throw new PcrError(
          'PCR_ERR_PID_RACE',
          `the pid lock ${PID_LOCK_PATH} was held by another process for ${LOCK_WAIT_MS} ms`,
        );
      }
      Atomics.wait(pause, 0, 0, 1);
    }
    let lastPid: number;
    try {
      lastPid = openSync(NS_LAST_PID, constants.O_WRONLY);
    } catch (err) {
      throw new PcrError('PCR_ERR_PID_PRIVILEGE', `${NS_LAST_PID}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    try {
      return body(lastPid);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EPERM') {
        throw new PcrError(
          'PCR_ERR_PID_PRIVILEGE',
          `writing ${NS_LAST_PID} was refused (EPERM): choosing pids needs CAP_CHECKPOINT_RESTORE`,
          { cause: err },
        );
      }
      throw err;
    } finally {
      closeSync(lastPid);
      unlock(lock);
    }
  } finally {
    closeSync(lock);
  }
}

export interface PidChoice {
  /** The pid the child must get. */
  pid: number;
  /** After the spawn, the cursor goes here: above every pid the restore wants. */
  park: number;
  /** How the child is named in an error, e.g. "task 4242". */
  what: string;
  /** Told of every lost race before the retry (a diagnostic line). */
  onRetry?: (attempt: number, got: number) => void;
}

let raceInjected = 0;

/**
 * Spawns through `spawn` (which must call `beforeSpawn` right before its posix_spawn)
 * until the child gets `choice.pid`. A child that got another pid (a process or thread
 * elsewhere took ours between the write and the spawn) is SIGKILLed and reaped and the
 * spawn retried, at most MAX_PID_ATTEMPTS times in all; a pid that another process
 * holds before the spawn is PCR_ERR_PID_TAKEN naming it.
 */
export function spawnAtPid(choice: PidChoice, spawn: (beforeSpawn: () => void) => number): number {
  const race = parsePidRace(process.env[PID_RACE_ENV]);
  return withPidLock((fd) => {
    for (let attempt = 1; ; attempt++) {
      const holder = holderOf(choice.pid);
      if (holder !== undefined) throw pidTakenError(choice.pid, choice.what, holder);
      let thief = 0;
      const injectRace = race?.pid === choice.pid && raceInjected < race.times;
      const got = spawn(() => {
        writeLastPid(fd, choice.pid - 1);
        if (injectRace) {
          raceInjected++;
          thief = posixSpawn({ path: '/bin/true', argv: ['true'], closeFrom: 3 });
        }
      });
      writeLastPid(fd, choice.park);
      if (thief > 0) reap(thief);
      if (got === choice.pid) return got;
      kill(got, 9);
      reap(got);
      if (attempt >= MAX_PID_ATTEMPTS) {
        throw new PcrError(
          'PCR_ERR_PID_RACE',
          `${choice.what} could not get its pid ${choice.pid}: other processes took it first ${attempt} times in a row`,
        );
      }
      choice.onRetry?.(attempt, got);
    }
  });
}

function reap(pid: number): void {
  try {
    waitpid(pid, 0);
  } catch {
    // not ours (cannot happen: we spawned it)
  }
}
