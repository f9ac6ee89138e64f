/**
 * restore --pidns new --same-pids: `<rundir>/ns-pids.json` maps each dumped pid (as the
 * dumper saw it) to the pid the task must get inside the new pid namespace: the last
 * entry of its dumped NSpid. The coordinator writes it before spawning the root; workers
 * read it (once) when they spawn children at their pids.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Image } from '../model/image.js';

const FILE = 'ns-pids.json';

/** The pid of a dumped task in its innermost pid namespace (last NSpid entry). */
export const innermostPid = (task: { pid: number; nsPids: readonly number[] }): number =>
  task.nsPids[task.nsPids.length - 1] ?? task.pid;

export function writeNsPids(rundir: string, image: Image): void {
  const map: Record<string, number> = {};
  for (const t of image.tasks) map[t.pid] = innermostPid(t);
  writeFileSync(join(rundir, FILE), JSON.stringify(map), { mode: 0o600 });
}

let cache: Record<string, number> | undefined;

/** Task `dumped`'s pid in the new namespace; its dumped pid if the file does not say. */
export function nsPidOf(rundir: string, dumped: number): number {
  try {
    cache ??= JSON.parse(readFileSync(join(rundir, FILE), 'utf8')) as Record<string, number>;
  } catch {
    cache = {};
  }
  return cache[dumped] ?? dumped;
}
