/**
 * One restore in progress, for restoreImage (coordinator.ts): the ZeroMQ ROUTER, the
 * coordinator machine with the real effects (spawning the root worker, watching every
 * worker through a pidfd, taking the tree down), the HELLO registry and the trace.
 */
import { createActor, fromPromise } from 'xstate';
import { pidfsHandleIno, waitPidfd, waitpid, WEXITED, WNOHANG } from '../../native/index.js';
import type { Image } from '../model/image.js';
import { PcrError } from '../errors.js';
import type { RestorePlan } from '../plan/types.js';
import {
  COORDINATOR_GRACE_MS,
  type PidMap,
  type WorkerMessage,
  type CoordinatorMessage,
} from '../protocol/messages.js';
import type { Difference } from '../verify/compare.js';
import { encodeToWorker, decodeToCoordinator } from '../protocol/wire.js';
import {
  coordinatorMachine,
  type CoordinatorOutput,
  type SpawnRootInput,
  type SpawnRootOutput,
  type AbortTreeInput,
  type TearDownTreeInput,
} from '../machines/coordinator.js';
import { spawnWorker } from '../launch/spawn-worker.js';
import { ControlRouter } from '../protocol/zmq-link.js';
import { WorkerMonitor } from './monitor.js';
import { writePidMapFile } from '../restore/pid-map-file.js';
import {
  traceInspector,
  TRACE_VERSION,
  type TraceDetails,
  type TraceSink,
} from '../protocol/trace.js';
import { Registry, type Admitted } from './registry.js';
import { AuthListener } from './auth-listener.js';
import { fileClasses, withFileClasses } from '../verify/report.js';
import type { RestoreOptions } from '../restore/restore-image.js';
import { textOf } from '../text.js';

const REAP_DEADLINE_MS = 3000;
const EXIT_WINDOW_MS = 50;
const FINAL_TRACE_MS = 2000;

/**
 * A worker that died before reaping its children leaves them to the nearest subreaper,
 * maybe our host. Reaps every pid we know of that is (or becomes) our child, SIGKILLing
 * one still running (our unreaped child: its pid cannot be reused), and every process of
 * the workers' process group (led by the root worker); leaves alone a pid that is not our
 * child (ECHILD). Gives up after `deadlineMs`.
 */
async function reapReturned(pids: Set<number>, group: number, deadlineMs: number): Promise<void> {
  const end = Date.now() + deadlineMs;
  const left = new Set(pids);
  // Every worker is done by now: anything left in their group is a straggler.
  if (group > 0) killQuiet(-group);
  while (Date.now() < end) {
    reapGroup(group);
    for (const pid of left) {
      try {
        const [got] = waitpid(pid, WNOHANG);
        if (got === pid) left.delete(pid);
        else killQuiet(pid);
      } catch {
        // ECHILD: not our child; gone, or still below a dying worker and on its way to us.
        if (!exists(pid)) left.delete(pid);
      }
    }
    // Checked before sleeping: after a clean teardown nothing is left at the first look.
    if (left.size === 0 && (group <= 0 || !exists(-group))) return;
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Reaps our exited children in the workers' process group (none if group is 0). */
function reapGroup(group: number): void {
  if (group <= 0) return;
  for (;;) {
    try {
      const [got] = waitpid(-group, WNOHANG);
      if (got <= 0) return;
    } catch {
      return; // ECHILD
    }
  }
}

function exists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function killQuiet(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone
  }
}

/** One restore in progress: the socket, the machine, the watched workers. */
export class Session {
  private registry!: Registry;
  private auth: AuthListener | undefined;
  /** Every process pid a worker told us about: reaped if it comes back to us. */
  private readonly spawned = new Set<number>();
  private readonly monitor: WorkerMonitor;
  private rootPidfd = -1;
  private rootPid = 0;
  private readonly parentOf: Map<number, number>;
  private exits: Array<{ pid: number; status: number }> = [];
  /** Workers (dumped pids) that traced at all, exited with 0, traced their `done`. */
  private readonly tracing = new Set<number>();
  private readonly cleanExits = new Set<number>();
  private readonly doneTraced = new Set<number>();
  private exitTimer: NodeJS.Timeout | undefined;
  /** FD_REPORTs held until every worker's is in (see classifyReports). */
  private readonly heldReports = new Map<number, Extract<WorkerMessage, { type: 'FD_REPORT' }>>();
  private actor: ReturnType<typeof createActor<typeof coordinatorMachine>> | undefined;
  private router!: ControlRouter;
  /** options.trace behind a guard: a sink that throws stops the restore (traceError). */
  private readonly trace: TraceSink | undefined;
  private traceBroken = false;

  private constructor(
    private readonly image: Image,
    private readonly plan: RestorePlan,
    private readonly rundir: string,
    private readonly options: RestoreOptions,
  ) {
    this.monitor = new WorkerMonitor((dumped, status) => this.onWorkerExit(dumped, status));
    this.parentOf = new Map(plan.tasks.map((t) => [t.pid, t.ppid]));
    const sink = options.trace;
    this.trace = sink && ((e) => this.traceGuarded(sink, e));
  }

  /**
   * Set when a callback of the caller (the trace sink, onVerified) threw before anything
   * else had failed: restoreImage throws it (a PcrError as it is, e.g. the SyscallError
   * of a trace file that cannot be written; anything else wrapped). A callback that
   * failed after another failure is only silenced: that failure is the one reported.
   */
  callerError: PcrError | undefined;

  /**
   * Calls the sink; the first time it throws, the sink is dropped and the restore stops,
   * instead of the exception escaping into the machine's inspection or the ZeroMQ
   * receive loop.
   */
  private traceGuarded(sink: TraceSink, e: Parameters<TraceSink>[0]): void {
    if (this.traceBroken) return;
    try {
      sink(e);
    } catch (err) {
      this.traceBroken = true;
      this.callerFailed('trace sink', err);
    }
  }

  /** Stops the restore (STOP: workers torn down, everything reaped) for callerError. */
  private callerFailed(what: string, err: unknown): void {
    if (this.actor?.getSnapshot().context.failure !== undefined || this.callerError) return;
    this.callerError =
      err instanceof PcrError
        ? err
        : new PcrError('PCR_ERR_RESTORE', `${what} failed: ${textOf(err)}`, { cause: err });
    // Not from inside the callback (inspection, action) that called us: on the next tick.
    setImmediate(() => this.deliver({ type: 'STOP', reason: this.callerError!.message }));
  }

  static async open(
    image: Image,
    plan: RestorePlan,
    rundir: string,
    options: RestoreOptions,
  ): Promise<Session> {
    const s = new Session(image, plan, rundir, options);
    s.auth = AuthListener.listen(rundir, {
      onStartupFailed: (from, dumped, failure) =>
        s.admit(() => s.registry.startupFailure(from, dumped, failure)),
    });
    s.registry = new Registry(s.auth, (dumped) => s.workerIno(dumped));
    try {
      s.router = await ControlRouter.bind(rundir, {
        onFrame: (id, frame) => s.onFrame(id, frame),
        onError: (err) => s.deliver({ type: 'STOP', reason: `control link: ${err.message}` }),
        onUnreachable: (id) => s.onUnreachable(Number(id)),
      });
    } catch (err) {
      s.auth.close();
      throw err;
    }
    return s;
  }

  private deliver(event: Parameters<NonNullable<typeof this.actor>['send']>[0]): void {
    if (this.actor?.getSnapshot().status === 'active') this.actor.send(event);
  }

  /**
   * A worker's death takes its child workers with it (PDEATHSIG), and their exits can be
   * seen first. Exits seen within EXIT_WINDOW_MS are delivered topmost first (fewest
   * ancestors in the plan), so the failure names the worker that died, not a victim.
   */
  private onWorkerExit(pid: number, status: number): void {
    this.exits.push({ pid, status });
    if (status === 0) this.cleanExits.add(pid);
    this.exitTimer ??= setTimeout(() => this.flushExits(), EXIT_WINDOW_MS);
  }

  /** pidfs ino of the process we watch as task `dumped`'s worker (its pidfd). */
  private workerIno(dumped: number): bigint | undefined {
    const w = this.monitor.get(dumped);
    if (w === undefined) return undefined;
    try {
      return pidfsHandleIno(w.pidfd);
    } catch {
      return undefined;
    }
  }

  /**
   * A send to worker `dumped` found it disconnected: it has died (its exit, seen through
   * its pidfd, names it and its status) or it closed its link while alive. Give the exit
   * report time to come; a worker still alive then is named.
   */
  private onUnreachable(dumped: number): void {
    setTimeout(() => {
      this.monitor.collectExited();
      const w = this.monitor.get(dumped);
      if (w === undefined) {
        // Not watched (it was gone before its pidfd could be opened): no exit will come.
        this.deliver({ type: 'STOP', reason: `task ${dumped} left the control link` });
      } else if (!w.exited) {
        this.deliver({
          type: 'STOP',
          reason: `task ${dumped} (pid ${w.pid}) is alive but not connected to the control link`,
        });
      }
    }, 2 * EXIT_WINDOW_MS).unref();
  }

  private flushExits(): void {
    this.monitor.collectExited(); // an ancestor dead but not yet seen is blamed first
    this.exitTimer = undefined;
    const exits = this.exits.splice(0);
    exits.sort((a, b) => this.depth(a.pid) - this.depth(b.pid));
    for (const e of exits) this.deliver({ type: 'WORKER_EXITED', pid: e.pid, status: e.status });
  }

  private depth(pid: number): number {
    let d = 0;
    for (
      let p = this.parentOf.get(pid);
      p !== undefined && p !== 0 && d < this.parentOf.size;
      p = this.parentOf.get(p)
    )
      d++;
    return d;
  }

  private traceWorker(message: Extract<WorkerMessage, { type: 'TRACE' }>): void {
    const t = message.trace;
    this.tracing.add(message.pid);
    if (t.to === 'done') this.doneTraced.add(message.pid);
    let details: TraceDetails = {};
    try {
      details = JSON.parse(t.details) as TraceDetails;
    } catch {
      details = { error: `unparsable details: ${t.details}` };
    }
    this.trace?.({
      v: TRACE_VERSION,
      time: t.timeMs,
      source: t.machine,
      pid: this.registry.restoredOf(message.pid) ?? 0,
      from: t.from,
      to: t.to,
      event: t.event,
      details,
    });
  }

  private onFrame(routingId: string, frame: Buffer): void {
    let message: WorkerMessage;
    try {
      message = decodeToCoordinator(frame);
    } catch (err) {
      return this.deliver({
        type: 'STOP',
        reason: `undecodable frame from ${routingId}: ${(err as Error).message}`,
      });
    }
    const pid = message.type === 'FD_REPORT' ? message.report.pid : message.pid;
    if (String(pid) !== routingId) {
      return this.deliver({
        type: 'STOP',
        reason: `worker '${routingId}' sent a message about task ${pid}`,
      });
    }
    if (message.type === 'WORKER_HELLO') return this.admit(() => this.registry.hello(message));
    // Only a worker whose HELLO was accepted may say anything else.
    if (!this.registry.isAccepted(pid)) return;
    if (message.type === 'TRACE') return this.traceWorker(message);
    if (message.type === 'FD_REPORT') return this.classifyReports(message);
    if (message.type === 'CHILDREN_SPAWNED') {
      const workers = new Set(this.plan.tasks.map((t) => t.pid));
      for (const c of message.children) {
        this.spawned.add(c.restored);
        if (workers.has(c.dumped)) this.watch(c.dumped, c.restored);
      }
      this.deliver(message);
      return this.admit(() => this.registry.expect(message.children));
    }
    this.deliver(message);
  }

  /**
   * Gives the reported fds their open-file classes (report-fds.ts: kcmp between the
   * reported fds of one ino, here once instead of in every worker). Held until every worker
   * reported: by then each one holds its final table (a worker reports after finalize
   * and keeps every fd until TEARDOWN), and the phase cannot have ended: a worker sends
   * its FD_REPORT before its PHASE_DONE on the same ordered link.
   */
  private classifyReports(message: Extract<WorkerMessage, { type: 'FD_REPORT' }>): void {
    this.heldReports.set(message.report.pid, message);
    if (this.heldReports.size < this.plan.tasks.length) return;
    const held = [...this.heldReports.values()];
    this.heldReports.clear();
    const restored = (m: (typeof held)[number]): number =>
      this.registry.restoredOf(m.report.pid) ?? m.report.restoredPid;
    let classes: ReturnType<typeof fileClasses>;
    try {
      classes = fileClasses(held.map((m) => ({ restoredPid: restored(m), fds: m.report.fds })));
    } catch (err) {
      return this.deliver({ type: 'STOP', reason: `verification: ${(err as Error).message}` });
    }
    for (const m of held) {
      this.deliver({ ...m, report: withFileClasses(m.report, restored(m), classes) });
    }
  }

  /** Delivers what the registry admits; a refused impostor stops the restore. */
  private admit(judge: () => Admitted[]): void {
    let admitted: Admitted[];
    try {
      admitted = judge();
    } catch (err) {
      return this.deliver({ type: 'STOP', reason: (err as Error).message });
    }
    for (const m of admitted) {
      if (m.type === 'WORKER_HELLO') this.spawned.add(m.restoredPid);
      this.deliver(m);
    }
  }

  private watch(dumped: number, restored: number): void {
    try {
      this.monitor.add(dumped, restored);
    } catch {
      // already gone: ESRCH. Its parent still holds it as a zombie, so this is rare;
      // registration then times out naming it.
      return;
    }
    this.killUntold(dumped); // reported after the abort began
  }

  private spawnRoot = async ({ root }: SpawnRootInput): Promise<SpawnRootOutput> => {
    const w = spawnWorker({
      dumpedPid: root.pid,
      rundir: this.rundir,
      reservedFds: root.reservedFds,
      stderrFd: this.options.workerStderr === undefined ? 2 : this.options.workerStderr,
      trace: this.options.trace !== undefined && this.options.traceWorkers !== false,
      ...(this.options.fault ? { fault: this.options.fault } : {}),
      // Its own process group: waitpid(-group) finds a worker that came back to us
      // before we ever learnt its pid (spawned early by a parent that died).
      setsid: true,
    });
    this.rootPidfd = w.pidfd;
    this.rootPid = w.pid;
    this.spawned.add(w.pid);
    this.monitor.add(root.pid, w.pid, w.pidfd);
    this.admit(() => this.registry.expect([{ dumped: root.pid, restored: w.pid }]));
    return { restoredPid: w.pid };
  };

  private sendFrame(to: number, frame: Uint8Array): void {
    void this.router.send(String(to), frame);
  }

  private send(to: number, message: CoordinatorMessage): void {
    this.sendFrame(to, encodeToWorker(message));
  }

  /** Waits for every worker to leave (grace), SIGKILLs the rest, reaps the root. */
  private async takeDown(graceMs: number): Promise<void> {
    if (!(await this.monitor.waitAllExited(graceMs))) {
      this.monitor.killAll();
      await this.monitor.waitAllExited(10_000);
    }
    this.reapRoot();
    await this.finalFrames();
  }

  /**
   * Frames a worker sent just before exiting (its last TRACEs) may still wait in the
   * ROUTER behind the pidfd exit event. A worker that traced and exited 0 sent its
   * `tearing-down → done` last (its DEALER lingers until it left): wait for exactly
   * those, bounded, instead of guessing a delay.
   */
  private async finalFrames(): Promise<void> {
    const missing = (): number =>
      [...this.cleanExits].filter((p) => this.tracing.has(p) && !this.doneTraced.has(p)).length;
    // No worker traced: no frame of theirs matters any more.
    if (this.tracing.size === 0) return;
    const deadline = Date.now() + FINAL_TRACE_MS;
    while (missing() > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  private reapRoot(): void {
    if (this.rootPidfd < 0) return;
    try {
      waitPidfd(this.rootPidfd, WEXITED);
    } catch {
      // reaped already
    }
  }

  private tearDownTree = async (_: TearDownTreeInput): Promise<void> => {
    await this.takeDown(this.graceMs());
  };

  /** Never shorter than a worker's grace for its children (see COORDINATOR_GRACE_MS). */
  private graceMs(): number {
    return Math.max(this.options.teardownGraceMs ?? 0, COORDINATOR_GRACE_MS);
  }

  private abortTree = async (_: AbortTreeInput): Promise<void> => {
    this.aborting = true;
    for (const w of this.monitor.alive()) this.killUntold(w.dumpedPid);
    await this.takeDown(this.graceMs());
  };

  /** Set once the restore aborts: see killUntold. */
  private aborting = false;

  /**
   * During an abort, SIGKILLs worker `dumped` if its HELLO was never accepted: it got no
   * TEARDOWN (that goes to accepted workers only) and nothing else would tell it to go,
   * so the takedown would wait out the whole grace for it, and so would its parent
   * worker (an abort in registration, e.g. a Ctrl-C, took 3 s). Its own children die by
   * PDEATHSIG and come back to its parent worker (a subreaper), or to us.
   */
  private killUntold(dumped: number): void {
    if (this.aborting && !this.registry.isAccepted(dumped)) this.monitor.kill(dumped);
  }

  private writePidMap(map: PidMap): void {
    try {
      writePidMapFile(this.options.pidMapPath!, map);
    } catch (err) {
      this.pidMapError = new PcrError(
        'PCR_ERR_SYSCALL',
        `--pid-map ${this.options.pidMapPath}: ${(err as Error).message}`,
        { cause: err },
      );
    }
  }

  /** Set when the verified pid map could not be written. */
  pidMapError: PcrError | undefined;

  run(): Promise<CoordinatorOutput> {
    const machine = coordinatorMachine.provide({
      actors: {
        spawnRoot: fromPromise<SpawnRootOutput, SpawnRootInput>(({ input }) =>
          this.spawnRoot(input),
        ),
        abortTree: fromPromise<void, AbortTreeInput>(({ input }) => this.abortTree(input)),
        tearDownTree: fromPromise<void, TearDownTreeInput>(({ input }) => this.tearDownTree(input)),
      },
      actions: {
        sendToWorker: (_, p: { to: number; message: CoordinatorMessage }) =>
          this.send(p.to, p.message),
        broadcast: (_, p: { message: CoordinatorMessage }) => {
          // One encoding for all: a PHASE carries the whole pid map.
          const frame = encodeToWorker(p.message);
          for (const pid of this.registry.accepted()) this.sendFrame(pid, frame);
        },
        reportResult: (_, p: { pidMap: PidMap; differences: Difference[] }) => {
          // Only a verified map is written; a failed write is reported, never thrown
          // from inside a machine action.
          if (this.options.pidMapPath && p.differences.length === 0) this.writePidMap(p.pidMap);
          try {
            this.options.onVerified?.(p);
          } catch (err) {
            this.callerFailed('onVerified', err);
          }
        },
      },
    });
    return new Promise<CoordinatorOutput>((resolve, reject) => {
      const actor = createActor(machine, {
        input: {
          image: this.image,
          plan: this.plan,
          phaseTimeoutMs: this.options.timeoutMs ?? 30_000,
          hold: this.options.hold ?? false,
        },
        ...(this.trace ? { inspect: traceInspector('coordinator', this.trace) } : {}),
      });
      this.actor = actor;
      actor.subscribe({
        complete: () => resolve(actor.getSnapshot().output!),
        error: reject,
      });
      const signal = this.options.signal;
      const onAbort = (): void =>
        this.deliver({ type: 'STOP', reason: textOf(signal?.reason ?? 'stopped') });
      signal?.addEventListener('abort', onAbort, { once: true });
      // A long-lived signal shared by many restores must not keep each finished one.
      this.unlisten = () => signal?.removeEventListener('abort', onAbort);
      actor.start();
      if (signal?.aborted) onAbort();
    });
  }

  private unlisten: () => void = () => {};

  async close(): Promise<void> {
    this.unlisten();
    clearTimeout(this.exitTimer);
    this.actor?.stop();
    // Whatever path we came by, no worker outlives the restore.
    if (this.monitor.alive().length > 0 || this.rootPidfd >= 0) {
      this.monitor.killAll();
      await this.monitor.waitAllExited(10_000);
      this.reapRoot();
    }
    await reapReturned(this.spawned, this.rootPid, REAP_DEADLINE_MS);
    this.monitor.close();
    this.rootPidfd = -1;
    this.auth?.close();
    await this.router.close();
  }
}
