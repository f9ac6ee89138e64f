/**
 * Reporting a start-up failure (startup-guard.ts): the child workers spawned early are
 * killed and reaped, with whatever came back to us, then the failure goes to the
 * coordinator over the auth socket, where the kernel vouches for our pid. Loaded only
 * when a start-up fails.
 */
import { kill, waitpid } from '../../../native/index.js';
import type { Failure } from '../../protocol/messages.js';
import { prespawned } from './prespawn.js';
import { reapOrphansUntilNone, ORPHAN_DEADLINE_MS } from '../../actors/children.js';
import { sendAuth } from './auth-client.js';
import type { LooseIdentity } from './failure.js';

const SIGKILL = 9;

async function stopChildren(): Promise<void> {
  for (const pid of prespawned.values()) {
    try {
      kill(pid, SIGKILL);
      waitpid(pid, 0);
    } catch {
      // gone already
    }
  }
  // Their own children die by PDEATHSIG and come back to us (we are a subreaper).
  await reapOrphansUntilNone(ORPHAN_DEADLINE_MS);
}

/** True once the coordinator has the failure; false if we do not know where it is. */
export async function reportStartupFailure(id: LooseIdentity, failure: Failure): Promise<boolean> {
  await stopChildren();
  if (id.rundir === undefined || id.dumpedPid === undefined) return false;
  // The auth socket takes messages of up to 4 KB (auth.ts): keep the message well below.
  const message =
    failure.message.length > 1000 ? `${failure.message.slice(0, 1000)}…` : failure.message;
  sendAuth(id.rundir, {
    type: 'STARTUP_FAILED',
    pid: id.dumpedPid,
    failure: { ...failure, message },
  });
  return true;
}
