/**
 * The private run directory of one restore: `ctl` (the ZeroMQ ipc endpoint) and the fd
 * sockets live there. Fresh per restore (mkdtemp gives mode 0700: other users cannot
 * connect, a second restore cannot take our endpoint over), removed at the end.
 */
import { mkdtempSync, rmSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PcrError } from '../errors.js';

/** Run directories of restores in progress in this process. */
const live = new Set<string>();

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
  live.add(dir);
  chmodSync(dir, 0o700);
  return dir;
}

export function removeRundir(dir: string): void {
  live.delete(dir);
  rmSync(dir, { recursive: true, force: true });
}

/** Synchronously removes every run directory still in use: for an exit that cannot wait. */
export function removeLiveRundirs(): void {
  for (const dir of [...live]) removeRundir(dir);
}
