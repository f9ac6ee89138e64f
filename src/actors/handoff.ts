/**
 * The worker's hand-off (docs/restore.md "Hand-off"): its pidfds go to the host's socket
 * over SCM_RIGHTS, batch by batch as the coordinator laid them out, and/or the worker
 * replaces itself with the host's program keeping exactly its pidfds (at their numbers,
 * with their file flags) and fds 0–2. Close-on-exec pidfds would vanish across execve:
 * they are kept and named in PIDFD_CR_CLOEXEC_FDS, for the program to put the bit back.
 *
 * Before execve the worker tells the coordinator it is about to exec by connecting to
 * `<rundir>/exec.sock` (close-on-exec): the kernel closes that connection when execve
 * succeeds, which is how the coordinator sees the exec from outside.
 */
import {
  closeQuiet,
  connectSeqpacket,
  execKeeping,
  prctl,
  sendFds,
  PR_SET_CHILD_SUBREAPER,
  PR_SET_PDEATHSIG,
} from '../../native/index.js';
import { PcrError, SyscallError } from '../errors.js';
import { sendFdMessages } from '../sys/fd-channel.js';
import { execSocketPath } from '../protocol/paths.js';
import type { HandOffInput, HandOffOutput } from '../machines/task-actors.js';
import { CLOEXEC_FDS_ENV, PIDFDS_ENV } from '../sys/cloexec-env.js';

/** The fds an exec keeps: fds 0–2 and every pidfd of the final table. */
export function keptFds(input: Pick<HandOffInput, 'fds'>): number[] {
  return [...new Set([0, 1, 2, ...input.fds.map((f) => f.fd)])].sort((a, b) => a - b);
}

const list = (fds: number[]): string => [...new Set(fds)].sort((a, b) => a - b).join(',');

/** PIDFD_CR_CLOEXEC_FDS=… for the planned close-on-exec pidfds (sorted, comma-separated). */
export function cloexecEnv(input: Pick<HandOffInput, 'fds'>): string {
  return `${CLOEXEC_FDS_ENV}=${list(input.fds.filter((f) => f.cloexec).map((f) => f.fd))}`;
}

/** PIDFD_CR_FDS=… for every pidfd of the final table. */
export function pidfdsEnv(input: Pick<HandOffInput, 'fds'>): string {
  return `${PIDFDS_ENV}=${list(input.fds.map((f) => f.fd))}`;
}

export async function handOff(rundir: string, input: HandOffInput): Promise<HandOffOutput> {
  const h = input.handoff;
  if (h.socketPath !== '') {
    try {
      sendFdMessages(
        h.socketPath,
        h.batches.map((b) => ({ payload: Buffer.from(b.payload), fds: b.fds })),
      );
    } catch (err) {
      throw new PcrError(
        'PCR_ERR_HANDOFF_SOCKET',
        `--handoff-socket ${h.socketPath}: task ${input.pid}: ${(err as Error).message}`,
        { cause: err },
      );
    }
  }
  if (h.execArgv.length === 0) return { batches: h.batches.length };
  const path = h.execArgv[0]!;
  // From here on the process is the program's: no pdeathsig (the coordinator may go,
  // -d), no subreaper role it did not ask for.
  prctl(PR_SET_PDEATHSIG, 0);
  prctl(PR_SET_CHILD_SUBREAPER, 0);
  const watch = connectSeqpacket(execSocketPath(rundir));
  try {
    execKeeping({
      path,
      argv: h.execArgv,
      env: [
        ...h.execEnv.filter(
          (e) => !e.startsWith(`${CLOEXEC_FDS_ENV}=`) && !e.startsWith(`${PIDFDS_ENV}=`),
        ),
        cloexecEnv(input),
        pidfdsEnv(input),
      ],
      keep: keptFds(input),
    });
  } catch (err) {
    // One byte says "execve failed" before the end of file (coordinator/exec-watch.ts).
    try {
      sendFds(watch, Buffer.from('F'), []);
    } catch {
      // the coordinator is gone: nobody to tell
    }
    closeQuiet(watch);
    const why = err instanceof SyscallError ? `${err.errnoName} (${err.errno})` : String(err);
    throw new PcrError('PCR_ERR_EXEC', `--exec for task ${input.pid}: execve ${path}: ${why}`, {
      cause: err,
    });
  }
}
