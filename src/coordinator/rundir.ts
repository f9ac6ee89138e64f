/**
 * The private run directory of one restore: `ctl` (the ZeroMQ ipc endpoint) and the fd
 * sockets live there. Fresh per restore (mkdtemp gives mode 0700: other users cannot
 * connect, a second restore cannot take our endpoint over), removed at the end.
 *
 * Removed whatever kills us, SIGKILL included: a guard process (`/bin/sh`, its own
 * session so a terminal's Ctrl-C does not reach it) waits for EOF on a socket whose
 * other end only we hold. The kernel closes that end when we die, however we die; the
 * guard then removes the directory and exits (init or our subreaper reaps it). On a
 * normal end we remove the directory, close our end and reap the guard ourselves.
 */
import { mkdtempSync, rmSync, chmodSync, symlinkSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PcrError } from '../errors.js';
import { closeQuiet, seqpacketPair, waitpid } from '../../native/index.js';
import { spawnClean } from '../sys/spawn-clean.js';

/** Run directories of restores in progress in this process, with their guards. */
const live = new Map<string, Guard>();

interface Guard {
  pid: number;
  /** Our end: its close (by us, or by the kernel when we die) wakes the guard. */
  fd: number;
}

/** `read` returns at EOF; the directory is removed only if it is still there. */
const GUARD_SCRIPT = 'read -r _; [ -e "$1" ] && exec rm -rf -- "$1"; exit 0';

function startGuard(dir: string): Guard {
  const [ours, theirs] = seqpacketPair();
  // Named for what it is in ps and /proc/P/comm (comm comes from the executed path).
  const path = join(dir, 'pcr-rundir-guard');
  symlinkSync('/bin/sh', path);
  try {
    const pid = spawnClean({
      path,
      argv: ['sh', '-c', GUARD_SCRIPT, 'pidfd-cr-rundir-guard', dir],
      env: { PATH: '/usr/bin:/bin' },
      stdio: [theirs, null, null],
      setsid: true,
    });
    return { pid, fd: ours };
  } catch (err) {
    closeQuiet(ours);
    throw err;
  } finally {
    closeQuiet(theirs);
    unlinkSync(path);
  }
}

function stopGuard(guard: Guard): void {
  closeQuiet(guard.fd);
  try {
    waitpid(guard.pid, 0); // it exits at once: the directory is gone, nothing to run
  } catch {
    // ECHILD: reaped already
  }
}

/** sun_path holds 108 bytes with the terminating NUL (unix(7)). */
const SUN_PATH_MAX = 107;

/** The longest socket path under `parent`: fd-<pid>.sock for a 7-digit pid (pid_max 2^22). */
const longestSocketPath = (parent: string): number =>
  Buffer.byteLength(join(parent, 'pcr-XXXXXX', 'fd-4194304.sock'));

/**
 * Where the run directory goes: `parent` if given (a PcrError if its socket paths would
 * not fit in sun_path), else $TMPDIR, or /tmp when $TMPDIR is too long for them.
 */
function rundirParent(parent: string | undefined): string {
  if (parent !== undefined) {
    if (longestSocketPath(parent) > SUN_PATH_MAX)
      throw new PcrError(
        'PCR_ERR_USAGE',
        `run directory parent ${parent}: socket paths under it would exceed ${SUN_PATH_MAX} bytes (sun_path)`,
      );
    return parent;
  }
  const tmp = tmpdir();
  return longestSocketPath(tmp) > SUN_PATH_MAX ? '/tmp' : tmp;
}

export function makeRundir(parentDir?: string): string {
  const parent = rundirParent(parentDir);
  let dir: string;
  try {
    dir = mkdtempSync(join(parent, 'pcr-'));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new PcrError(
      parentDir === undefined ? 'PCR_ERR_SYSCALL' : 'PCR_ERR_USAGE',
      `run directory parent ${parent}: cannot make the run directory there: ${code}`,
      { cause: err },
    );
  }
  chmodSync(dir, 0o700);
  try {
    live.set(dir, startGuard(dir));
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return dir;
}

export function removeRundir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  const guard = live.get(dir);
  live.delete(dir);
  if (guard) stopGuard(guard);
}

/** Synchronously removes every run directory still in use: for an exit that cannot wait. */
export function removeLiveRundirs(): void {
  for (const dir of [...live.keys()]) removeRundir(dir);
}
