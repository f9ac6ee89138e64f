/**
 * The processes a worker makes and must reap itself (Node does not reap posix_spawn'ed
 * children): its child workers, its zombie children (never reaped before teardown: that
 * is what they restore), and orphans of the subtree (every worker is a child subreaper, so
 * a process orphaned below it comes back to it, not to init, which reaps only every 1–2 s
 * here).
 */
import {
  pidfdOpen,
  pidfdSendSignal,
  waitPidfd,
  waitpid,
  closeQuiet,
  WEXITED,
  WNOHANG,
} from '../../native/index.js';
import { spawnWorker, samePid } from '../launch/spawn-worker.js';
import { nsPidOf } from '../launch/ns-pids.js';
import { spawnZombie } from '../sys/temp-process.js';
import { whenReadable } from '../sys/readiness.js';
import type { WorkerChild, ZombieChild } from '../plan/types.js';
import type { PidPair } from '../protocol/messages.js';

export class Children {
  private readonly workers = new Map<number, number>();
  private readonly zombies = new Map<number, number>();

  constructor(
    private readonly rundir: string,
    private readonly stderrFd: number | null,
    private readonly trace: boolean,
    /** A zombie child was reaped at teardown (dumped pid, pid, its wait status): traced. */
    private readonly onZombieReaped?: (dumped: number, pid: number, status: number) => void,
    /** restore --same-pids: children at their dumped pids. */
    private readonly samePids = false,
    /** restore --pidns new: we live in the new pid namespace (pids from ns-pids.json). */
    private readonly inPidns = false,
  ) {}

  private log = (line: string): void => {
    if (this.stderrFd === null) return;
    try {
      process.stderr.write(`pidfd-cr worker: ${line}\n`);
    } catch {
      // stderr closed
    }
  };

  /** Takes over child workers spawned before the plan came (prespawn.ts). */
  adopt(prespawned: ReadonlyMap<number, number>): void {
    for (const [dumped, pid] of prespawned) this.workers.set(dumped, pid);
  }

  spawnWorkers(list: readonly WorkerChild[]): PidPair[] {
    return list.map((c) => {
      const early = this.workers.get(c.pid);
      if (early !== undefined) return { dumped: c.pid, restored: early };
      const { pid, pidfd } = spawnWorker({
        dumpedPid: c.pid,
        rundir: this.rundir,
        reservedFds: c.reservedFds,
        stderrFd: this.stderrFd,
        trace: this.trace,
        ...(this.samePids ? { samePids: true, log: this.log } : {}),
        ...(this.inPidns ? { pidns: 'member' as const } : {}),
      });
      // No helper pidfd is kept: the child is ours, its pid stays valid until we reap it.
      closeQuiet(pidfd);
      this.workers.set(c.pid, pid);
      return { dumped: c.pid, restored: pid };
    });
  }

  private wanted(dumped: number): number {
    return this.inPidns ? nsPidOf(this.rundir, dumped) : dumped;
  }

  spawnZombies(list: readonly ZombieChild[]): PidPair[] {
    return list.map((z) => {
      const choice = this.samePids
        ? samePid(this.wanted(z.pid), `zombie ${z.pid}`, this.log)
        : undefined;
      const pid = spawnZombie(z.exitStatus, z.comm, choice);
      this.zombies.set(z.pid, pid);
      return { dumped: z.pid, restored: pid };
    });
  }

  /**
   * Teardown: waits for the child workers to exit (they got TEARDOWN too), SIGKILLs any
   * still there after `graceMs`, reaps them, the zombies and every orphan that came to us.
   */
  async reapAll(graceMs: number): Promise<void> {
    await Promise.all([...this.workers.values()].map((pid) => reapWorker(pid, graceMs)));
    for (const [dumped, pid] of this.zombies) {
      const status = reapQuietly(pid);
      if (status !== undefined) this.onZombieReaped?.(dumped, pid, status);
    }
    this.workers.clear();
    this.zombies.clear();
    await reapOrphansUntilNone(ORPHAN_DEADLINE_MS);
  }
}

async function reapWorker(pid: number, graceMs: number): Promise<void> {
  let fd: number;
  try {
    fd = pidfdOpen(pid);
  } catch {
    reapQuietly(pid);
    return;
  }
  try {
    // SIGKILL after the grace; a timer, not an AbortSignal (the first listener costs a
    // worker ≈ 1 ms of CPU, paid in every worker's teardown).
    const kill = setTimeout(() => killQuiet(fd), graceMs);
    try {
      await whenReadable(fd);
    } finally {
      clearTimeout(kill);
    }
    waitPidfd(fd, WEXITED);
  } catch {
    // already reaped
  } finally {
    closeQuiet(fd);
  }
}

function killQuiet(pidfd: number): void {
  try {
    pidfdSendSignal(pidfd, 9);
  } catch {
    // exited meanwhile
  }
}

/** Reaps `pid`; its wait status, or undefined if it was not ours to reap. */
function reapQuietly(pid: number): number | undefined {
  try {
    return waitpid(pid, 0)[1];
  } catch {
    // not ours any more, or already reaped
    return undefined;
  }
}

/**
 * A child SIGKILLed above takes its own children down by PDEATHSIG; they come back to us
 * (we are a subreaper) a moment later. Reap until we have no child at all (ECHILD), so
 * none of them reaches our parent, giving up after `deadlineMs`.
 */
export const ORPHAN_DEADLINE_MS = 1000;
export async function reapOrphansUntilNone(deadlineMs: number): Promise<void> {
  const end = Date.now() + deadlineMs;
  while (Date.now() < end) {
    try {
      const [pid] = waitpid(-1, WNOHANG);
      if (pid > 0) continue;
    } catch {
      return; // ECHILD: no child left
    }
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** waitpid(-1, WNOHANG) until nothing is left: safe in a worker, which has no other children. */
export function reapOrphans(): void {
  for (;;) {
    try {
      const [pid] = waitpid(-1, WNOHANG);
      if (pid <= 0) return;
    } catch {
      return; // ECHILD
    }
  }
}
