/**
 * What a worker is told at spawn, through one environment variable (PCR_WORKER, JSON):
 * which dumped task it plays, where the coordinator and the fd sockets are, which fd
 * numbers were reserved for it, and who spawned it (checked after PR_SET_PDEATHSIG).
 */
import { PcrError } from '../errors.js';

export const WORKER_ENV = 'PCR_WORKER';
/** Test hook, read only by workers: see docs/restore.md "Fault injection". */
export const FAULT_ENV = 'PCR_FAULT';

export interface WorkerIdentity {
  /** Dumped pid of the task this worker restores; also its ZeroMQ routing id. */
  dumpedPid: number;
  /** Private run directory: ctl (ZeroMQ ipc) and fd-<dumped pid>.sock live there. */
  rundir: string;
  /** fd numbers the task will hold, taken by placeholders since exec. */
  reservedFds: number[];
  /** Pid of the process that spawned this worker (its parent). */
  spawnerPid: number;
  /** The worker's stderr is usable for diagnostics (fd 2 is not one of the task's). */
  stderrUsable: boolean;
  /** Send TRACE messages (the coordinator has a trace sink that wants worker events). */
  trace: boolean;
  /** restore --same-pids: children (workers and zombies) at their dumped pids. */
  samePids?: boolean;
  /**
   * restore --pidns new: `init` for the root, the init (pid 1) of the new pid namespace
   * (its parent, outside it, shows as 0; it mounts the namespace's own /proc); `member`
   * for every other worker (pids inside it: launch/ns-pids.ts).
   */
  pidns?: 'init' | 'member';
}

export function encodeIdentity(id: WorkerIdentity): string {
  return JSON.stringify(id);
}

export function decodeIdentity(text: string | undefined): WorkerIdentity {
  if (text === undefined) {
    throw new PcrError('PCR_ERR_USAGE', `${WORKER_ENV} is not set: workers are started by restore`);
  }
  const id = JSON.parse(text) as Partial<WorkerIdentity>;
  const ok =
    Number.isInteger(id.dumpedPid) &&
    typeof id.rundir === 'string' &&
    Array.isArray(id.reservedFds) &&
    id.reservedFds.every(Number.isInteger) &&
    Number.isInteger(id.spawnerPid) &&
    typeof id.stderrUsable === 'boolean' &&
    typeof id.trace === 'boolean' &&
    (id.samePids === undefined || typeof id.samePids === 'boolean') &&
    (id.pidns === undefined || id.pidns === 'init' || id.pidns === 'member');
  if (!ok) throw new PcrError('PCR_ERR_USAGE', `${WORKER_ENV} is malformed: ${text}`);
  return id as WorkerIdentity;
}
