/**
 * restoreImage's part of --same-pids (docs/restore.md "Same pids"): the pre-flight before
 * anything is started (privilege, every dumped pid free and named with its holder) and
 * the check after verification that every
 * task is at its dumped pid under its dumped parent (verify/same-pids.ts).
 */
import type { Image } from '../model/image.js';
import { checkPidsAvailable } from '../sys/pid-choose.js';
import { samePidDifferences } from '../verify/same-pids.js';
import type { VerifiedResult } from '../coordinator/settings.js';

/** Refuses (PCR_ERR_PID_PRIVILEGE, PCR_ERR_PID_TAKEN) before anything starts. */
export function prepareSamePids(image: Image): void {
  checkPidsAvailable(
    image.tasks.map((t) => ({
      pid: t.pid,
      what: `${t.state === 'zombie' ? 'zombie' : 'task'} ${t.pid} (${t.comm})`,
    })),
  );
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
