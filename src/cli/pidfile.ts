/**
 * `restore --pidfile F` (as criu's): the restored root's pid, written once verified,
 * atomically (a temporary file in its directory, then rename).
 */
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { PcrError } from '../errors.js';
import type { PidMap } from '../protocol/messages.js';
import { restoredPid } from '../protocol/pidmap.js';

/** The restored pid of the dumped root `rootPid`. */
export function restoredRoot(map: PidMap, rootPid: number): number {
  const root = restoredPid(map, rootPid);
  if (root === undefined)
    throw new PcrError('PCR_ERR_RESTORE', `pid map has no entry for root ${rootPid}`);
  return root;
}

export function writePidFile(path: string, pid: number): void {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  try {
    writeFileSync(tmp, `${pid}\n`, { mode: 0o644 });
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw new PcrError('PCR_ERR_USAGE', `restore: --pidfile ${path}: ${(err as Error).message}`, {
      cause: err,
    });
  }
}
