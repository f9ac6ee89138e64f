/**
 * Watching restored workers from the coordinator: a pidfd per worker (pidfds poll
 * readable once their process exits, for any process, not only children). How it died:
 * PIDFD_GET_INFO(EXIT) once reaped (our pidfd existed before the reap), else the zombie's
 * /proc/P/stat field 52.
 */
import { readStat } from '../procfs/read.js';
import {
  pidfdOpen,
  pidfdGetInfo,
  pidfdSendSignal,
  closeQuiet,
  PIDFD_INFO,
} from '../../native/index.js';
import { watchReadable, type Watch } from '../sys/readiness.js';

export interface Watched {
  dumpedPid: number;
  pid: number;
  pidfd: number;
  watch: Watch | undefined;
  exited: boolean;
}

function zombieStatus(pid: number): number | undefined {
  try {
    const { state, exitCode } = readStat(pid);
    return state === 'Z' ? exitCode : undefined;
  } catch {
    return undefined;
  }
}

/** The wait status of an exited process behind `pidfd`; -1 when nothing tells it. */
export function exitStatusOf(pidfd: number, pid: number): number {
  try {
    const info = pidfdGetInfo(pidfd, PIDFD_INFO.EXIT);
    if (info.hasExit) return info.exitCode;
  } catch {
    // not reaped yet: ESRCH-free path below
  }
  return zombieStatus(pid) ?? -1;
}

export class WorkerMonitor {
  private readonly watched = new Map<number, Watched>();
  private readonly waiters = new Set<() => void>();

  constructor(private readonly onExit: (dumpedPid: number, status: number) => void) {}

  /** Starts watching; `pidfd` is taken over (closed by close()). */
  add(dumpedPid: number, pid: number, given?: number): void {
    if (this.watched.has(dumpedPid)) {
      if (given !== undefined) closeQuiet(given);
      return;
    }
    // Opened only once we know it is kept: a repeated report must not leak a pidfd.
    const pidfd = given ?? pidfdOpen(pid);
    const w: Watched = { dumpedPid, pid, pidfd, watch: undefined, exited: false };
    w.watch = watchReadable(pidfd, () => this.exited(w, exitStatusOf(pidfd, pid)));
    this.watched.set(dumpedPid, w);
  }

  private exited(w: Watched, status: number): void {
    w.watch?.stop();
    w.watch = undefined;
    w.exited = true;
    this.onExit(w.dumpedPid, status);
    this.waiters.forEach((f) => f());
  }

  /**
   * Reports now every watched worker that has exited but whose pidfd event has not come
   * yet (under load the event loop may see a victim's exit long before its killer's).
   */
  collectExited(): void {
    for (const w of this.alive()) {
      const status = exitStatusOf(w.pidfd, w.pid);
      if (status !== -1) this.exited(w, status);
    }
  }

  get(dumpedPid: number): Watched | undefined {
    return this.watched.get(dumpedPid);
  }

  all(): Watched[] {
    return [...this.watched.values()];
  }

  alive(): Watched[] {
    return this.all().filter((w) => !w.exited);
  }

  /** Resolves once every watched worker exited, or after `ms` (false then). */
  waitAllExited(ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const check = (): void => {
        if (this.alive().length > 0) return;
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve(true);
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        resolve(this.alive().length === 0);
      }, ms);
      this.waiters.add(check);
      check();
    });
  }

  killAll(): void {
    for (const w of this.alive()) this.kill(w.dumpedPid);
  }

  /** SIGKILLs worker `dumpedPid` if it is watched and alive. */
  kill(dumpedPid: number): void {
    const w = this.watched.get(dumpedPid);
    if (w === undefined || w.exited) return;
    try {
      pidfdSendSignal(w.pidfd, 9);
    } catch {
      // gone meanwhile
    }
  }

  close(): void {
    for (const w of this.watched.values()) {
      w.watch?.stop();
      closeQuiet(w.pidfd);
    }
    this.watched.clear();
  }
}
