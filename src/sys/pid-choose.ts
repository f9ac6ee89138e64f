/**
 * Choosing a child's pid (restore --same-pids, docs/restore.md "Same pids"): the child is
 * made by clone3 with `set_tid` (native/clone3.ts: posix_spawn semantics, no JavaScript in
 * the child), which gives it exactly that pid or fails with EEXIST, atomically: nothing
 * else on the machine is steered into the restore's pids and no lock is needed. A pid
 * found taken at the spawn (a process or thread that appeared after the pre-flight) is
 * retried a bounded number of times, with short pauses, since such holders are often
 * short-lived; then the holder is named.
 */
import { readFileSync } from 'node:fs';
import { PcrError, isErrno } from '../errors.js';
import { spawnAt, waitpid } from '../../native/index.js';
import { parseCapEff } from '../procfs/parse.js';
import { procExists, readComm, readStatus } from '../procfs/read.js';

/** How many times a spawn is tried when the pid is found taken. */
export const MAX_PID_ATTEMPTS = 5;
/** Pause before retry n: n × this. */
const RETRY_PAUSE_MS = 10;

/**
 * TEST HOOK (docs/restore.md "Same pids"): `PCR_PID_RACE=<pid>:<n>` makes the first `n`
 * spawns at `<pid>` lose a real race: just before the spawn, a throwaway `/bin/true` is
 * spawned at that pid (clone3 set_tid), so the spawn fails with EEXIST; the thief is
 * reaped before the retry. Read by whoever spawns (the coordinator for the root, workers
 * for the rest). Not meant for anything else.
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
    const comm = readComm(pid);
    const { tgid } = readStatus(pid);
    if (tgid !== pid) return `a thread of process ${tgid} (${comm})`;
    return comm;
  } catch {
    // /proc/<pid> gone between the reads, or never there
    return procExists(pid) ? '(unknown)' : undefined;
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
  return parseCapEff(readFileSync('/proc/self/status', 'utf8'));
}

export function canChoosePids(): boolean {
  const caps = effectiveCaps();
  return ((caps >> CAP_CHECKPOINT_RESTORE) & 1n) === 1n || ((caps >> CAP_SYS_ADMIN) & 1n) === 1n;
}

/** restore --pidns new: making a pid (and mount) namespace needs CAP_SYS_ADMIN. */
export function checkCanMakePidns(): void {
  if (((effectiveCaps() >> CAP_SYS_ADMIN) & 1n) !== 1n) {
    throw new PcrError(
      'PCR_ERR_PID_PRIVILEGE',
      `--pidns new needs CAP_SYS_ADMIN (root) to make a pid namespace; this process (uid ${process.getuid?.() ?? '?'}) does not have it`,
    );
  }
}

export function checkCanChoosePids(): void {
  if (!canChoosePids()) {
    throw new PcrError(
      'PCR_ERR_PID_PRIVILEGE',
      `--same-pids needs CAP_CHECKPOINT_RESTORE (or CAP_SYS_ADMIN, or root) to choose pids (clone3 set_tid); this process (uid ${process.getuid?.() ?? '?'}) has neither`,
    );
  }
}

export interface PidChoice {
  /** The pid the child must get. */
  pid: number;
  /** How the child is named in an error, e.g. "task 4242". */
  what: string;
  /** Told of every lost race before the retry (a diagnostic line). */
  onRetry?: (attempt: number, holder: string) => void;
}

let raceInjected = 0;
const pause = new Int32Array(new SharedArrayBuffer(4));

/**
 * Calls `spawn` (a clone3 set_tid spawn at `choice.pid`) until it succeeds: EEXIST (the
 * pid is taken) is retried up to MAX_PID_ATTEMPTS times in all, then named:
 * PCR_ERR_PID_TAKEN with its holder, or PCR_ERR_PID_RACE when nobody holds it any more;
 * EPERM is PCR_ERR_PID_PRIVILEGE.
 */
export function spawnAtPid(choice: PidChoice, spawn: () => number): number {
  const race = parsePidRace(process.env[PID_RACE_ENV]);
  for (let attempt = 1; ; attempt++) {
    let thief = 0;
    if (race?.pid === choice.pid && raceInjected < race.times) {
      raceInjected++;
      thief = spawnAt({
        pid: choice.pid,
        path: '/bin/true',
        argv: ['true'],
        env: {},
        closeFrom: 3,
      });
      // clone3 returns once the thief's exec released our memory, a moment (several ms on
      // a loaded machine) before the kernel renames it: wait for its comm, so that the
      // error names it as it is.
      for (let i = 0; i < 1000 && holderOf(thief) !== 'true'; i++) Atomics.wait(pause, 0, 0, 1);
    }
    try {
      return spawn();
    } catch (err) {
      if (isErrno(err, 'EPERM')) {
        throw new PcrError(
          'PCR_ERR_PID_PRIVILEGE',
          `${choice.what}: clone3 with set_tid ${choice.pid} was refused (EPERM): choosing pids needs CAP_CHECKPOINT_RESTORE`,
          { cause: err },
        );
      }
      if (!isErrno(err, 'EEXIST')) throw err;
      const holder = holderOf(choice.pid) ?? 'a process that is gone now';
      if (attempt >= MAX_PID_ATTEMPTS) {
        if (holderOf(choice.pid) !== undefined)
          throw pidTakenError(choice.pid, choice.what, holder);
        throw new PcrError(
          'PCR_ERR_PID_RACE',
          `${choice.what} could not get its pid ${choice.pid}: other processes took it first ${attempt} times in a row`,
        );
      }
      choice.onRetry?.(attempt, holder);
      Atomics.wait(pause, 0, 0, RETRY_PAUSE_MS * attempt);
    } finally {
      if (thief > 0) reap(thief);
    }
  }
}

function reap(pid: number): void {
  try {
    waitpid(pid, 0);
  } catch {
    // not ours (cannot happen: we spawned it)
  }
}
