/** The pid map file: JSON {"<dumped pid>": restored pid}, written atomically (rename). */
import { writeFileSync, renameSync, rmSync } from 'node:fs';
import { dirname, basename, join } from 'node:path';
import type { PidMap } from '../protocol/messages.js';

export function pidMapJson(map: PidMap): Record<string, number> {
  return Object.fromEntries(map.pids.map((p) => [String(p.dumped), p.restored]));
}

export function writePidMapFile(path: string, map: PidMap): void {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  try {
    writeFileSync(tmp, JSON.stringify(pidMapJson(map), null, 2) + '\n', { mode: 0o644 });
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}
