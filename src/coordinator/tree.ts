/**
 * The restored tree's processes as the coordinator holds them: the root worker it spawns,
 * a pidfd per worker (WorkerMonitor), every pid a worker told us about (reaped if it comes
 * back to us), and taking all of it down.
 */
import { waitPidfd, WEXITED } from '../../native/index.js';
import { spawnWorker, type WorkerSpawn } from '../launch/spawn-worker.js';
import { WorkerMonitor } from './monitor.js';
import { reapReturned } from './reap.js';

const REAP_DEADLINE_MS = 3000;

export class RestoredTree {
  readonly monitor: WorkerMonitor;
  /** Every process pid a worker told us about: reaped if it comes back to us. */
  private readonly spawned = new Set<number>();
  private rootPidfd = -1;
  private rootPid = 0;
  /** Set once the restore aborts: see killUntold. */
  private aborting = false;

  /**
   * @param onExit     a watched worker exited with this wait status
   * @param isAccepted its HELLO was accepted (it gets a TEARDOWN)
   */
  constructor(
    onExit: (dumped: number, status: number) => void,
    private readonly isAccepted: (dumped: number) => boolean,
  ) {
    this.monitor = new WorkerMonitor(onExit);
  }

  /** Spawns the root worker (its own session and process group) and watches it. */
  spawnRoot(spawn: Omit<WorkerSpawn, 'setsid'>): number {
    // Its own process group: waitpid(-group) finds a worker that came back to us before
    // we ever learnt its pid (spawned early by a parent that died).
    const w = spawnWorker({ ...spawn, setsid: true });
    this.rootPidfd = w.pidfd;
    this.rootPid = w.pid;
    this.spawned.add(w.pid);
    this.monitor.add(spawn.dumpedPid, w.pid, w.pidfd);
    return w.pid;
  }

  /** A pid a worker told us about (a child worker, a zombie, a temp process). */
  remember(pid: number): void {
    this.spawned.add(pid);
  }

  watch(dumped: number, restored: number): void {
    try {
      this.monitor.add(dumped, restored);
    } catch {
      // already gone: ESRCH. Its parent still holds it as a zombie, so this is rare;
      // registration then times out naming it.
      return;
    }
    this.killUntold(dumped); // reported after the abort began
  }

  /** Aborting: every worker that was never accepted is SIGKILLed (killUntold). */
  abort(): void {
    this.aborting = true;
    for (const w of this.monitor.alive()) this.killUntold(w.dumpedPid);
  }

  /**
   * During an abort, SIGKILLs worker `dumped` if its HELLO was never accepted: it got no
   * TEARDOWN (that goes to accepted workers only) and nothing else would tell it to go,
   * so the takedown would wait out the whole grace for it, and so would its parent
   * worker. Its own children die by PDEATHSIG and come back to its parent worker (a
   * subreaper), or to us.
   */
  private killUntold(dumped: number): void {
    if (this.aborting && !this.isAccepted(dumped)) this.monitor.kill(dumped);
  }

  /** Waits for every worker to leave (grace), SIGKILLs the rest, reaps the root. */
  async takeDown(graceMs: number): Promise<void> {
    if (!(await this.monitor.waitAllExited(graceMs))) {
      this.monitor.killAll();
      await this.monitor.waitAllExited(10_000);
    }
    this.reapRoot();
  }

  /** Whatever path we came by, no worker outlives the restore. */
  async close(): Promise<void> {
    if (this.monitor.alive().length > 0 || this.rootPidfd >= 0) {
      this.monitor.killAll();
      await this.monitor.waitAllExited(10_000);
      this.reapRoot();
    }
    await reapReturned(this.spawned, this.rootPid, REAP_DEADLINE_MS);
    this.monitor.close();
    this.rootPidfd = -1;
  }

  /** Detach: lets go of every process without killing or reaping any (criu -d). */
  release(): void {
    this.monitor.close();
    this.rootPidfd = -1;
  }

  private reapRoot(): void {
    if (this.rootPidfd < 0) return;
    try {
      waitPidfd(this.rootPidfd, WEXITED);
    } catch {
      // reaped already
    }
  }
}
