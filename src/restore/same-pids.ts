/**
 * restoreImage's part of --same-pids (docs/restore.md "Same pids"): the pre-flight before
 * anything is started (privilege, every dumped pid free and named with its holder) and
 * the check after verification that every
 * task is at its dumped pid under its dumped parent (verify/same-pids.ts).
 */
import type { Image } from '../model/image.js';
import { checkPidsAvailable, checkCanChoosePids, checkCanMakePidns } from '../sys/pid-choose.js';
import { samePidDifferences } from '../verify/same-pids.js';
import type { VerifiedResult } from '../coordinator/settings.js';

/**
 * Refuses (PCR_ERR_PID_PRIVILEGE, PCR_ERR_PID_TAKEN) before anything starts. In a new
 * pid namespace every pid is free: only the privilege is checked.
 */
export function prepareSamePids(image: Image, pidnsNew: boolean, samePids: boolean): void {
  if (pidnsNew) {
    checkCanMakePidns();
    if (samePids) checkCanChoosePids();
    return;
  }
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
  pidnsNew = false,
): (r: VerifiedResult) => void {
  return (r) => {
    found.push(...samePidDifferences(image, r.pidMap, pidnsNew));
    onVerified?.({ pidMap: r.pidMap, differences: [...r.differences, ...found] });
  };
}
