/**
 * One restore in progress: the coordinator machine run with the real effects. It wires
 * the ZeroMQ ROUTER (frames.ts decides what a frame may do), the auth socket and HELLO
 * registry, the restored tree's processes (tree.ts), worker exits in blame order
 * (exit-order.ts), report classification (report-gate.ts) and the caller's callbacks
 * (caller-guard.ts). restore/restore-image.ts makes and closes it.
 */
import { createActor, fromPromise } from 'xstate';
import { pidfsHandleIno } from '../../native/index.js';
import type { Image } from '../model/image.js';
import type { RestorePlan } from '../plan/types.js';
import type { CoordinatorMessage, PidMap, WorkerMessage } from '../protocol/messages.js';
import { encodeToWorker } from '../protocol/wire.js';
import type { Difference } from '../verify/compare.js';
import {
  coordinatorMachine,
  type CoordinatorOutput,
  type SpawnRootInput,
  type SpawnRootOutput,
  type AbortTreeInput,
  type TearDownTreeInput,
} from '../machines/coordinator.js';
import { ControlRouter } from '../protocol/zmq-link.js';
import {
  traceInspector,
  TRACE_VERSION,
  type TraceDetails,
  type TraceSink,
} from '../protocol/trace.js';
import { Registry, type Admitted } from './registry.js';
import { AuthListener } from './auth-listener.js';
import { textOf } from '../text.js';
import type { PcrError } from '../errors.js';
import type { SessionSettings } from './settings.js';
import { RestoredTree } from './tree.js';
import { TraceRecorder } from './trace-recorder.js';
import { ExitOrder, EXIT_WINDOW_MS } from './exit-order.js';
import { CallerGuard } from './caller-guard.js';
import { FinalTraces } from './final-traces.js';
import { ReportGate } from './report-gate.js';
import { routeFrame } from './frames.js';
import { PidnsView } from './pidns.js';
import { innermostPid } from '../launch/ns-pids.js';

/** How long an abort waits for the workers' last TRACE frames. */
const ABORT_FINAL_TRACE_MS = 100;

type CoordinatorEvent = Parameters<
  ReturnType<typeof createActor<typeof coordinatorMachine>>['send']
>[0];

export class Session {
  private registry!: Registry;
  private auth: AuthListener | undefined;
  private router!: ControlRouter;
  private actor: ReturnType<typeof createActor<typeof coordinatorMachine>> | undefined;
  private readonly tree: RestoredTree;
  private readonly exits: ExitOrder;
  private readonly guard: CallerGuard;
  private readonly finalTraces = new FinalTraces();
  private readonly reports: ReportGate;
  private readonly workers: ReadonlySet<number>;
  /** The settings' sink behind the guard (a sink that throws stops the restore). */
  private readonly recorder: TraceRecorder | undefined;
  private readonly trace: TraceSink | undefined;
  /** Frames from peers that are not registered workers: ignored, counted. */
  private ignoredFrames = 0;
  /** Restored pid -> its parent's restored pid, for process events. */
  private readonly parentPid = new Map<number, number>();
  private unlisten: () => void = () => {};
  /** restore --pidns new: pids of the new namespace <-> ours (pidns.ts). */
  private ns: PidnsView | undefined;

  private constructor(
    private readonly image: Image,
    private readonly plan: RestorePlan,
    private readonly rundir: string,
    private readonly settings: SessionSettings,
  ) {
    this.tree = new RestoredTree(
      (dumped, status) => {
        this.finalTraces.exited(dumped, status);
        this.noteExit(dumped, status);
        this.exits.add(dumped, status);
      },
      (dumped) => this.registry.isAccepted(dumped),
    );
    this.exits = new ExitOrder(
      new Map(plan.tasks.map((t) => [t.pid, t.ppid])),
      () => this.tree.monitor.collectExited(),
      (pid, status) => this.deliver({ type: 'WORKER_EXITED', pid, status }),
    );
    this.guard = new CallerGuard(
      () => this.actor?.getSnapshot().context.failure !== undefined,
      (reason) => this.deliver({ type: 'FAIL', reason }),
    );
    this.reports = new ReportGate(plan.tasks.length, (d) => this.registry.restoredOf(d));
    this.workers = new Set(plan.tasks.map((t) => t.pid));
    this.recorder = settings.trace && new TraceRecorder(this.guard.guardSink(settings.trace));
    this.trace = this.recorder?.state;
  }

  /** The first failure of a caller's callback (trace sink, onVerified), if any. */
  get callerError(): PcrError | undefined {
    return this.guard.callerError;
  }

  static async open(
    image: Image,
    plan: RestorePlan,
    rundir: string,
    settings: SessionSettings,
  ): Promise<Session> {
    const s = new Session(image, plan, rundir, settings);
    s.auth = AuthListener.listen(rundir, {
      onStartupFailed: (from, dumped, failure) =>
        s.admit(() => s.registry.startupFailure(from, dumped, failure)),
    });
    s.registry = new Registry(s.auth, (dumped) => s.workerIno(dumped));
    try {
      s.router = await ControlRouter.bind(rundir, {
        onFrame: (id, frame) => s.onFrame(id, frame),
        onError: (err) => s.deliver({ type: 'FAIL', reason: `control link: ${err.message}` }),
        onUnreachable: (id) => s.onUnreachable(Number(id)),
      });
    } catch (err) {
      s.auth.close();
      throw err;
    }
    return s;
  }

  private deliver(event: CoordinatorEvent): void {
    if (this.actor?.getSnapshot().status === 'active') this.actor.send(event);
  }

  /** pidfs ino of the process we watch as task `dumped`'s worker (its pidfd). */
  private workerIno(dumped: number): bigint | undefined {
    const w = this.tree.monitor.get(dumped);
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
      this.tree.monitor.collectExited();
      const w = this.tree.monitor.get(dumped);
      if (w === undefined) {
        // Not watched (it was gone before its pidfd could be opened): no exit will come.
        this.deliver({ type: 'FAIL', reason: `task ${dumped} left the control link` });
      } else if (!w.exited) {
        this.deliver({
          type: 'FAIL',
          reason: `task ${dumped} (pid ${w.pid}) is alive but not connected to the control link`,
        });
      }
    }, 2 * EXIT_WINDOW_MS).unref();
  }

  private onFrame(routingId: string, frame: Buffer): void {
    const registering = this.actor?.getSnapshot().matches('registering') ?? true;
    const r = routeFrame(routingId, frame, (d) => this.registry.isAccepted(d), registering);
    switch (r.route) {
      case 'stop':
        return this.deliver({ type: 'FAIL', reason: r.reason });
      case 'ignore':
        return this.frameIgnored(r.reason);
      case 'hello': {
        // Proofs and expectations are by our pids; a worker in a new namespace says its own.
        const inner = r.message.restoredPid;
        const hello = this.ns
          ? { ...r.message, restoredPid: this.ns.outerOf(inner) ?? inner }
          : r.message;
        return this.admit(() => this.registry.hello(hello));
      }
      case 'trace':
        return this.traceWorker(r.message);
      case 'report':
        return this.classifyReport(r.message);
      case 'children':
        return this.childrenSpawned(r.message);
      case 'machine':
        return this.deliver(r.message);
    }
  }

  /** Traced one by one up to a bound, then every 1000th: a flood must not flood the trace. */
  private frameIgnored(reason: string | undefined): void {
    const n = ++this.ignoredFrames;
    if (reason === undefined || (n > 100 && n % 1000 !== 0)) return;
    this.recorder?.note('coordinator', 'frame-ignored', {
      ignored: { reason: `${reason} (${n} ignored so far)` },
    });
  }

  private noteSpawn(task: number, pid: number, ppid: number, role: 'worker' | 'zombie'): void {
    this.parentPid.set(pid, ppid);
    this.recorder?.note(
      `task:${task}`,
      'process',
      { process: { action: 'spawn', role, pid, ppid, task, startTime: Date.now() } },
      pid,
    );
  }

  private noteExit(task: number, status: number): void {
    const pid = this.tree.monitor.get(task)?.pid ?? 0;
    this.recorder?.note(
      `task:${task}`,
      'process',
      {
        process: {
          action: 'exit',
          role: 'worker',
          pid,
          ppid: this.parentPid.get(pid) ?? 0,
          task,
          exitTime: Date.now(),
          waitStatus: status,
        },
      },
      pid,
    );
  }

  private traceWorker(message: Extract<WorkerMessage, { type: 'TRACE' }>): void {
    const t = message.trace;
    this.finalTraces.traced(message.pid, t.to);
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

  private classifyReport(message: Extract<WorkerMessage, { type: 'FD_REPORT' }>): void {
    let classified: ReturnType<ReportGate['add']>;
    try {
      classified = this.reports.add(message);
    } catch (err) {
      return this.deliver({ type: 'FAIL', reason: `verification: ${(err as Error).message}` });
    }
    for (const m of classified) this.deliver(m);
  }

  private childrenSpawned(message: Extract<WorkerMessage, { type: 'CHILDREN_SPAWNED' }>): void {
    const parent = this.registry.restoredOf(message.pid) ?? 0;
    // The machine keeps the workers' pids; the runtime uses ours (pidns.ts).
    const ours = message.children.map((c) => ({
      dumped: c.dumped,
      restored: this.ns?.outerOf(c.restored) ?? c.restored,
    }));
    for (const c of ours) {
      this.tree.remember(c.restored);
      const worker = this.workers.has(c.dumped);
      if (worker) this.tree.watch(c.dumped, c.restored);
      this.noteSpawn(c.dumped, c.restored, parent, worker ? 'worker' : 'zombie');
    }
    this.deliver(message);
    this.admit(() => this.registry.expect(ours));
  }

  /** Delivers what the registry admits; a refused impostor stops the restore. */
  private admit(judge: () => Admitted[]): void {
    let admitted: Admitted[];
    try {
      admitted = judge();
    } catch (err) {
      return this.deliver({ type: 'FAIL', reason: (err as Error).message });
    }
    for (const m of admitted) {
      if (m.type === 'WORKER_HELLO') {
        this.tree.remember(m.restoredPid);
        this.recorder?.note('coordinator', 'register', {
          register: { task: m.pid, pid: m.restoredPid },
        });
        if (this.ns) {
          this.deliver({ ...m, restoredPid: this.ns.innerOf(m.restoredPid) ?? m.restoredPid });
          continue;
        }
      }
      this.deliver(m);
    }
  }

  private spawnRoot = async ({ root }: SpawnRootInput): Promise<SpawnRootOutput> => {
    const { settings } = this;
    const restoredPid = this.tree.spawnRoot({
      dumpedPid: root.pid,
      rundir: this.rundir,
      reservedFds: root.reservedFds,
      stderrFd: settings.workerStderr,
      trace: settings.traceWorkers,
      ...(settings.fault ? { fault: settings.fault } : {}),
      ...(settings.samePids ? { samePids: true } : {}),
      ...(settings.pidnsNew ? { pidns: 'init' as const } : {}),
      ...(settings.pidnsNew && settings.samePids
        ? { nsPark: Math.max(...this.image.tasks.map(innermostPid)) }
        : {}),
    });
    if (settings.pidnsNew) this.ns = new PidnsView(restoredPid);
    this.noteSpawn(root.pid, restoredPid, process.pid, 'worker');
    this.admit(() => this.registry.expect([{ dumped: root.pid, restored: restoredPid }]));
    // In a new pid namespace the root is its init: pid 1 there, as the workers see it.
    return { restoredPid: settings.pidnsNew ? 1 : restoredPid };
  };

  private sendFrame(to: number, frame: Uint8Array): void {
    void this.router.send(String(to), frame);
  }

  /**
   * Every worker gone (grace, then SIGKILL), and their last TRACE frames read. An abort
   * waits for those frames only briefly: a worker torn down mid-step may never send its
   * `done`, and an abort must end within 0.5 s of the signal.
   */
  private async takeDown(aborting = false): Promise<void> {
    await this.tree.takeDown(this.settings.teardownGraceMs);
    await this.finalTraces.wait(aborting ? ABORT_FINAL_TRACE_MS : undefined);
  }

  private machine() {
    return coordinatorMachine.provide({
      actors: {
        spawnRoot: fromPromise<SpawnRootOutput, SpawnRootInput>(({ input }) =>
          this.spawnRoot(input),
        ),
        abortTree: fromPromise<void, AbortTreeInput>(async () => {
          this.tree.abort();
          await this.takeDown(true);
        }),
        tearDownTree: fromPromise<void, TearDownTreeInput>(() => this.takeDown()),
      },
      actions: {
        sendToWorker: (_, p: { to: number; message: CoordinatorMessage }) =>
          this.sendFrame(p.to, encodeToWorker(p.message)),
        broadcast: (_, p: { message: CoordinatorMessage }) => {
          // One encoding for all: a PHASE carries the whole pid map.
          const frame = encodeToWorker(p.message);
          for (const pid of this.registry.accepted()) this.sendFrame(pid, frame);
        },
        reportResult: (_, p: { pidMap: PidMap; differences: Difference[] }) => {
          const onVerified = this.settings.onVerified;
          if (onVerified) this.guard.call('onVerified', () => onVerified(p));
        },
      },
    });
  }

  run(): Promise<CoordinatorOutput> {
    return new Promise<CoordinatorOutput>((resolve, reject) => {
      const actor = createActor(this.machine(), {
        input: {
          image: this.image,
          plan: this.plan,
          phaseTimeoutMs: this.settings.phaseTimeoutMs,
          hold: this.settings.hold,
        },
        ...(this.trace ? { inspect: traceInspector('coordinator', this.trace) } : {}),
      });
      this.actor = actor;
      actor.subscribe({
        complete: () => resolve(actor.getSnapshot().output!),
        error: reject,
      });
      this.listenForAbort();
      this.recorder?.note(
        'coordinator',
        'process',
        {
          process: {
            action: 'spawn',
            role: 'coordinator',
            pid: process.pid,
            ppid: process.ppid,
            startTime: performance.timeOrigin,
          },
        },
        process.pid,
      );
      actor.start();
      if (this.settings.signal?.aborted) this.stopForSignal();
    });
  }

  private stopForSignal = (): void =>
    this.deliver({ type: 'STOP', reason: textOf(this.settings.signal?.reason ?? 'stopped') });

  private listenForAbort(): void {
    const signal = this.settings.signal;
    signal?.addEventListener('abort', this.stopForSignal, { once: true });
    // A long-lived signal shared by many restores must not keep each finished one.
    this.unlisten = () => signal?.removeEventListener('abort', this.stopForSignal);
  }

  async close(): Promise<void> {
    this.unlisten();
    this.exits.cancel();
    this.actor?.stop();
    await this.tree.close();
    this.auth?.close();
    await this.router.close();
  }
}
