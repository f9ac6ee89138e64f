/**
 * Starting a worker: posix_spawn of `node dist/src/worker/start.cjs` (the bundled worker,
 * main.ts and all it imports, run with a code cache: start.cts) with every fd number
 * the task will hold already taken by a /dev/null placeholder, so Node's own fds (epoll,
 * eventfd, sockets …) can never land there; the worker later dup3()s each pidfd onto its
 * placeholder, which replaces it atomically. The worker arms PR_SET_PDEATHSIG itself as
 * its first act (src/worker/early.ts).
 */
import { fileURLToPath } from 'node:url';
import { pidfdOpen } from '../../native/index.js';
import { spawnClean } from '../sys/spawn-clean.js';
import type { PidChoice } from '../sys/pid-choose.js';
import { nsPidOf } from './ns-pids.js';

/** The pid a same-pids spawn wants: the dumped one, or the one inside a new namespace. */
const wantedPid = (req: WorkerSpawn): number =>
  req.pidns === 'member' ? nsPidOf(req.rundir, req.dumpedPid) : req.dumpedPid;
import {
  WORKER_ENV,
  FAULT_ENV,
  encodeIdentity,
  type WorkerIdentity,
} from '../protocol/identity.js';

/** Variables that cost start-up time (NODE_EXTRA_CA_CERTS: +20–90 ms) or confuse a child. */
const DROPPED_ENV = [
  'NODE_OPTIONS',
  'NODE_EXTRA_CA_CERTS',
  'NODE_CHANNEL_FD',
  'NODE_CHANNEL_SERIALIZATION_MODE',
  'NODE_UNIQUE_ID',
  'NODE_TEST_CONTEXT',
];

/** The worker's entry (worker/start.cts: the bundle with V8's code cache); the same path
 * from inside the bundle. */
export const WORKER_SCRIPT = fileURLToPath(new URL('../worker/start.cjs', import.meta.url));

export interface WorkerSpawn {
  dumpedPid: number;
  rundir: string;
  reservedFds: readonly number[];
  /** Our fd given to the worker as stderr; null: /dev/null. */
  stderrFd: number | null;
  /** Test hook passed as PCR_FAULT (docs/restore.md); else an inherited PCR_FAULT stays. */
  fault?: string;
  /** Workers send their state changes as TRACE messages (default false). */
  trace?: boolean;
  /** Base environment (default: process.env). */
  env?: Readonly<Record<string, string | undefined>>;
  /** The root worker leads a new session: every worker is in its process group. */
  setsid?: boolean;
  /** restore --same-pids: the worker at its dumped pid, and so are its children. */
  samePids?: boolean;
  /** restore --pidns new: the worker's place in the new pid namespace (WorkerIdentity). */
  pidns?: 'init' | 'member';
  /**
   * With pidns 'init' and samePids: the highest pid the tasks want in the new namespace.
   * The init starts as a /bin/sh gate that writes it to its namespace's ns_last_pid and
   * execs the worker, so that Node's own threads (made before any JavaScript runs) take
   * pids above it instead of 2, 3, … (docs/restore.md "Pid namespaces").
   */
  nsPark?: number;
  /** With samePids: told of every lost race for the pid (one line). */
  log?: (line: string) => void;
}

export interface SpawnedWorker {
  pid: number;
  /** Our pidfd of the worker (close-on-exec): for reaping and liveness. */
  pidfd: number;
}

export function workerEnv(req: WorkerSpawn): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.env ?? process.env)) {
    if (v !== undefined && !DROPPED_ENV.includes(k)) env[k] = v;
  }
  const reservedFds = [...new Set(req.reservedFds)].sort((a, b) => a - b);
  const id: WorkerIdentity = {
    dumpedPid: req.dumpedPid,
    rundir: req.rundir,
    reservedFds,
    spawnerPid: process.pid,
    stderrUsable: req.stderrFd !== null && !reservedFds.includes(2),
    trace: req.trace ?? false,
    ...(req.samePids ? { samePids: true } : {}),
    ...(req.pidns ? { pidns: req.pidns } : {}),
  };
  env[WORKER_ENV] = encodeIdentity(id);
  if (req.fault) env[FAULT_ENV] = req.fault;
  return env;
}

export function spawnWorker(req: WorkerSpawn): SpawnedWorker {
  const gate = req.pidns === 'init' && req.nsPark !== undefined;
  const pid = spawnClean({
    path: gate ? '/bin/sh' : process.execPath,
    argv: gate
      ? [
          'sh',
          '-c',
          `echo ${req.nsPark} > /proc/sys/kernel/ns_last_pid && exec "$0" "$@"`,
          process.execPath,
          WORKER_SCRIPT,
        ]
      : [process.execPath, WORKER_SCRIPT],
    env: workerEnv(req),
    stdio: [null, null, req.stderrFd],
    reserve: req.reservedFds,
    ...(req.setsid ? { setsid: true } : {}),
    ...(req.pidns === 'init' ? { newPidNs: true } : {}),
    ...(req.samePids && req.pidns !== 'init'
      ? { choosePid: samePid(wantedPid(req), `task ${req.dumpedPid}`, req.log) }
      : {}),
  });
  // The child is ours and not reaped, so its pid cannot have been reused yet.
  return { pid, pidfd: pidfdOpen(pid) };
}

/**
 * The choice of a same-pids spawn at pid `pid`; `log` gets one line per lost race (a
 * worker's diagnostics, when its stderr is usable).
 */
export function samePid(pid: number, what: string, log?: (line: string) => void): PidChoice {
  return {
    pid,
    what,
    ...(log
      ? {
          onRetry: (attempt: number, holder: string) =>
            log(`${what}: pid ${pid} was taken by ${holder} at the spawn; retry ${attempt}`),
        }
      : {}),
  };
}
