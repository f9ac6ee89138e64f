/**
 * The spawn plan (`<rundir>/spawn-plan.json`): for each dumped pid, its worker children
 * and their reserved fds, straight from the RestorePlan. The coordinator writes it before
 * it spawns the root; each worker reads its own entry first thing (worker/startup/
 * prespawn.ts) and spawns its children before the task plan arrives.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import type { RestorePlan, WorkerChild } from '../plan/types.js';
import { spawnPlanPath } from '../protocol/paths.js';

export type SpawnPlan = Record<string, WorkerChild[]>;

export function writeSpawnPlan(rundir: string, plan: RestorePlan): void {
  const out: SpawnPlan = {};
  for (const t of plan.tasks) if (t.workerChildren.length > 0) out[t.pid] = t.workerChildren;
  writeFileSync(spawnPlanPath(rundir), JSON.stringify(out), { mode: 0o600 });
}

/** Worker `dumpedPid`'s children; none if the file is missing or unreadable. */
export function readSpawnPlanEntry(rundir: string, dumpedPid: number): WorkerChild[] {
  try {
    const plan = JSON.parse(readFileSync(spawnPlanPath(rundir), 'utf8')) as SpawnPlan;
    return plan[dumpedPid] ?? [];
  } catch {
    return [];
  }
}
