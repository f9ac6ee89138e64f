/**
 * Spawning child workers before the task plan arrives. The coordinator writes the spawn
 * plan (`<rundir>/spawn-plan.json`: for each dumped pid, its worker children and their
 * reserved fds, straight from the RestorePlan) before it spawns the root; each worker
 * reads its own entry first thing. The task machine's spawnChildren later adopts these
 * children (and spawns any the file did not list). Without the file nothing is spawned
 * early.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { closeQuiet } from '../../../native/index.js';
import { spawnWorker } from '../../launch/spawn-worker.js';
import type { WorkerIdentity } from '../../protocol/identity.js';
import type { RestorePlan, WorkerChild } from '../../plan/types.js';

export type SpawnPlan = Record<string, WorkerChild[]>;

export const spawnPlanPath = (rundir: string): string => join(rundir, 'spawn-plan.json');

export function writeSpawnPlan(rundir: string, plan: RestorePlan): void {
  const out: SpawnPlan = {};
  for (const t of plan.tasks) if (t.workerChildren.length > 0) out[t.pid] = t.workerChildren;
  writeFileSync(spawnPlanPath(rundir), JSON.stringify(out), { mode: 0o600 });
}

function readOwnEntry(id: WorkerIdentity): WorkerChild[] {
  try {
    const plan = JSON.parse(readFileSync(spawnPlanPath(id.rundir), 'utf8')) as SpawnPlan;
    return plan[id.dumpedPid] ?? [];
  } catch {
    return [];
  }
}

/** Child workers spawned early: dumped pid -> pid (filled by prespawnChildren). */
export const prespawned = new Map<number, number>();

export function prespawnChildren(id: WorkerIdentity): void {
  const spawned = prespawned;
  for (const c of readOwnEntry(id)) {
    const w = spawnWorker({
      dumpedPid: c.pid,
      rundir: id.rundir,
      reservedFds: c.reservedFds,
      stderrFd: id.stderrUsable ? 2 : null,
      trace: id.trace,
    });
    // No helper pidfd is kept: the child is ours, its pid stays valid until we reap it.
    closeQuiet(w.pidfd);
    spawned.set(c.pid, w.pid);
  }
}
