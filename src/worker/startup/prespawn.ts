/**
 * Spawning child workers before the task plan arrives, from the worker's entry of the
 * spawn plan (launch/spawn-plan.ts). The task machine's spawnChildren later adopts these
 * children (and spawns any the file did not list). Without the file nothing is spawned
 * early.
 */
import { closeQuiet } from '../../../native/index.js';
import { spawnWorker } from '../../launch/spawn-worker.js';
import { readSpawnPlanEntry } from '../../launch/spawn-plan.js';
import type { WorkerIdentity } from '../../protocol/identity.js';

/** Child workers spawned early: dumped pid -> pid (filled by prespawnChildren). */
export const prespawned = new Map<number, number>();

export function prespawnChildren(id: WorkerIdentity): void {
  const spawned = prespawned;
  for (const c of readSpawnPlanEntry(id.rundir, id.dumpedPid)) {
    const w = spawnWorker({
      dumpedPid: c.pid,
      rundir: id.rundir,
      reservedFds: c.reservedFds,
      stderrFd: id.stderrUsable ? 2 : null,
      trace: id.trace,
      ...(id.pidns ? { pidns: 'member' as const } : {}),
      ...(id.samePids
        ? {
            samePids: true,
            log: (line: string) => {
              if (id.stderrUsable)
                process.stderr.write(`pidfd-cr worker ${id.dumpedPid}: ${line}\n`);
            },
          }
        : {}),
    });
    // No helper pidfd is kept: the child is ours, its pid stays valid until we reap it.
    closeQuiet(w.pidfd);
    spawned.set(c.pid, w.pid);
  }
}
