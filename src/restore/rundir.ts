/**
 * The private run directory of one restore: `ctl` (the ZeroMQ ipc endpoint) and the fd
 * sockets live there. Fresh per restore (mkdtemp gives mode 0700: other users cannot
 * connect, a second restore cannot take our endpoint over), removed at the end.
 */
import { mkdtempSync, rmSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Run directories of restores in progress in this process. */
const live = new Set<string>();

export function makeRundir(parent: string = tmpdir()): string {
  const dir = mkdtempSync(join(parent, 'pcr-'));
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
