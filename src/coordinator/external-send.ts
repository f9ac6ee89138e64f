/**
 * restore --pidns new: the external targets. Inside the new pid namespace a process
 * outside it cannot be reached (pidfd_open takes the namespace's pids, open_by_handle_at
 * of a pidfs handle gives ESTALE), so the planner makes the coordinator, which lives in
 * the parent namespace, the opener of those files (plan/types.ts COORDINATOR_OPENER).
 * Right after GO it opens each one with the external-reopen strategy (kinds/external.ts:
 * same boot, pidfd_open of the dumped pid, the pidfs ino must be the dumped one), sends
 * them over SCM_RIGHTS to the holders' fd sockets in the messages the holders' receive
 * steps expect (planner.ts coordinatorSends), and closes its own copies. A holder waits
 * for them in wait-for-fd as for any sender's.
 */
import { closeQuiet } from '../../native/index.js';
import { PcrError } from '../errors.js';
import { strategyOf } from '../kinds/registry.js';
import { coordinatorSends } from '../plan/planner.js';
import { COORDINATOR_OPENER, type RestorePlan } from '../plan/types.js';
import type { PidMap } from '../protocol/messages.js';
import { fdSocketPath } from '../protocol/paths.js';
import { restoredPid } from '../protocol/pidmap.js';
import { encodeFdTransfer } from '../protocol/wire.js';
import { sendFdMessages } from '../sys/fd-channel.js';
import { openExternal } from '../sys/open-files.js';
import { bootId } from '../procfs/host.js';

const notHere = (what: string): never => {
  throw new PcrError(
    'PCR_ERR_INTERNAL',
    `the coordinator opens external targets only, not ${what}`,
  );
};

/**
 * Opens the files the coordinator is the opener of and sends them to their holders.
 * `outerOf` gives our pid of a worker's pid in the new namespace (the listener's
 * SO_PEERCRED pid we check). Returns the number of files sent; throws a PcrError naming
 * the target (gone, another process) or the holder. Our copies are closed either way.
 */
export function sendCoordinatorFiles(
  plan: RestorePlan,
  pidMap: PidMap,
  rundir: string,
  outerOf: (inner: number) => number | undefined,
): number {
  const files = plan.files.filter((f) => f.opener === COORDINATOR_OPENER);
  if (files.length === 0) return 0;
  const opened = new Map<number, number>();
  try {
    const current = bootId();
    for (const f of files) {
      const as = {
        flags: f.flags,
        pidfdFlags: f.pidfdFlags,
        ...(f.reopenFlags === undefined ? {} : { reopenFlags: f.reopenFlags }),
      };
      const fd = strategyOf(f.how).open(f.how, as, {
        restoredPid: () => notHere('a restored task'),
        restoredTid: () => notHere('a restored thread'),
        tempPid: () => notHere('a temporary process'),
        openPid: () => notHere('a pid'),
        openExternal: (target, flags, imageBootId) =>
          openExternal(target, flags, imageBootId, current),
      });
      opened.set(f.fileId, fd);
    }
    for (const send of coordinatorSends(plan)) {
      const inner = restoredPid(pidMap, send.to);
      const outer = inner === undefined ? undefined : outerOf(inner);
      if (outer === undefined)
        throw new PcrError('PCR_ERR_RESTORE', `task ${send.to} is gone: cannot send it its fds`);
      const payload = Buffer.from(
        encodeFdTransfer({ from: COORDINATOR_OPENER, phase: 'open-alive', fileIds: send.fileIds }),
      );
      sendFdMessages(
        fdSocketPath(rundir, send.to),
        [{ payload, fds: send.fileIds.map((id) => opened.get(id)!) }],
        outer,
      );
    }
    return files.length;
  } finally {
    for (const fd of opened.values()) closeQuiet(fd);
  }
}
