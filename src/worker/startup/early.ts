/**
 * The first module a worker evaluates (imported before anything else by main.ts):
 * PR_SET_PDEATHSIG(SIGKILL), then the check that the spawner is still our parent. If it
 * died before the prctl, we were already reparented and the signal will never come, so
 * we leave at once.
 */
import { prctl, PR_SET_PDEATHSIG } from '../../../native/index.js';
import { WORKER_ENV, decodeIdentity, type WorkerIdentity } from '../../protocol/identity.js';

const SIGKILL = 9;

export function armDeathSignal(spawnerPid: number): void {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (process.ppid !== spawnerPid) process.exit(70);
}

export const identity: WorkerIdentity = decodeIdentity(process.env[WORKER_ENV]);
armDeathSignal(identity.spawnerPid);
