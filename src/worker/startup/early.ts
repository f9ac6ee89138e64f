/**
 * The first module a worker evaluates (imported before anything else by main.ts):
 * PR_SET_PDEATHSIG(SIGKILL), then the check that the spawner is still our parent. If it
 * died before the prctl, we were already reparented and the signal will never come, so
 * we leave at once.
 */
import { prctl, PR_SET_PDEATHSIG, mountOwnProc } from '../../../native/index.js';
import { WORKER_ENV, decodeIdentity, type WorkerIdentity } from '../../protocol/identity.js';

const SIGKILL = 9;

export function armDeathSignal(spawnerPid: number, pidnsInit = false): void {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  // The init of a new pid namespace sees its parent (outside it) as pid 0.
  const parent = pidnsInit ? 0 : spawnerPid;
  if (process.ppid !== parent) process.exit(70);
}

export const identity: WorkerIdentity = decodeIdentity(process.env[WORKER_ENV]);
armDeathSignal(identity.spawnerPid, identity.pidns === 'init');
// restore --pidns new: the new namespace's own /proc, before anything reads a pid there.
if (identity.pidns === 'init') mountOwnProc();
