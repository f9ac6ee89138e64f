/**
 * restoreImage's part of --same-pids (docs/restore.md "Same pids"): the pre-flight before
 * anything is started (privilege, every dumped pid free and named with its holder), the
 * pid cursor parked above the image's pids, and the check after verification that every
 * task is at its dumped pid under its dumped parent (verify/same-pids.ts).
 */
import { readFileSync } from 'node:fs';
import type { Image } from '../model/image.js';
import { checkPidsAvailable, parkCursor, NS_LAST_PID } from '../sys/pid-choose.js';
import { samePidDifferences } from '../verify/same-pids.js';
import type { VerifiedResult } from '../coordinator/settings.js';

/**
 * Refuses (PCR_ERR_PID_PRIVILEGE, PCR_ERR_PID_TAKEN) before anything starts; then parks
 * the pid cursor above every dumped pid and returns where (SessionSettings.samePidsPark),
 * so that what the restore starts before its tasks (the run directory's guard, threads)
 * does not take their pids.
 */
export function prepareSamePids(image: Image): number {
  checkPidsAvailable(
    image.tasks.map((t) => ({
      pid: t.pid,
      what: `${t.state === 'zombie' ? 'zombie' : 'task'} ${t.pid} (${t.comm})`,
    })),
  );
  const current = Number(readFileSync(NS_LAST_PID, 'utf8'));
  const park = Math.max(current, ...image.tasks.map((t) => t.pid));
  parkCursor(park);
  return park;
}

/** onVerified with the same-pid differences added (the caller sees them too). */
export function checkSamePidsOnVerified(
  image: Image,
  found: Array<VerifiedResult['differences'][number]>,
  onVerified: ((r: VerifiedResult) => void) | undefined,
): (r: VerifiedResult) => void {
  return (r) => {
    found.push(...samePidDifferences(image, r.pidMap));
    onVerified?.({ pidMap: r.pidMap, differences: [...r.differences, ...found] });
  };
}
