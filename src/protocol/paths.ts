/**
 * Where the processes of one restore meet: every socket and file lives in the run
 * directory, a private 0700 directory made by the coordinator (coordinator/rundir.ts).
 * ZeroMQ ipc paths over 107 bytes fail, so the names are short.
 */
import { join } from 'node:path';

/** The coordinator's ZeroMQ ROUTER (ipc). */
export const controlPath = (rundir: string): string => join(rundir, 'ctl');
/** Where a worker proves which process it is (SO_PEERCRED; docs/protocol.md). */
export const authSocketPath = (rundir: string): string => join(rundir, 'auth.sock');
/** Where task `dumpedPid` receives fds over SCM_RIGHTS. */
export const fdSocketPath = (rundir: string, dumpedPid: number): string =>
  join(rundir, `fd-${dumpedPid}.sock`);
/** Every worker's children and reserved fds, written before the root is spawned. */
export const spawnPlanPath = (rundir: string): string => join(rundir, 'spawn-plan.json');
/** Where a worker announces its exec: the kernel closes the connection when execve works. */
export const execSocketPath = (rundir: string): string => join(rundir, 'exec.sock');
