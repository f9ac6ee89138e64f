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
import { restoredPid } from '../protocol/pidmap.js';
import type { Difference } from '../verify/compare.js';
import {
  coordinatorMachine,
  type CoordinatorOutput,
  type SpawnRootInput,
  type SpawnRootOutput,
  type AbortTreeInput,
  type TearDownTreeInput,
  type RunHookInput,
  type RunHookOutput,
  type StartHandoffParams,
} from '../machines/coordinator.js';
import { ControlRouter } from '../protocol/zmq-link.js';
import {
  parseWorkerNote,
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
import { stepLogger } from './step-log.js';
import { ExecWatch } from './exec-watch.js';
import { expandExec } from './exec-spec.js';
import { execSocketPath } from '../protocol/paths.js';
import { handoffBatches } from '../protocol/handoff.js';
import { FAULT_ENV, WORKER_ENV } from '../protocol/identity.js';
import type { HandoffMessage } from '../protocol/messages.js';
import { PidnsView } from './pidns.js';
import { sendCoordinatorFiles } from './external-send.js';
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
  /** With --exec: sees each worker's exec from outside. */
  private execWatch: ExecWatch | undefined;
  /** Workers that exec'd their host program: no frame goes to them any more. */
  private readonly execed = new Set<number>();
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
        // An exec'd program that exited at once: its exec is known before its exit.
        this.execWatch?.flush(dumped);
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
    if (settings.handoff?.exec !== undefined) {
      try {
        s.execWatch = new ExecWatch(
          execSocketPath(rundir),
          (pid) => plan.tasks.find((t) => s.registry.restoredOf(t.pid) === pid)?.pid,
          (dumped) => s.onExec(dumped),
        );
      } catch (err) {
        s.auth.close();
        throw err;
      }
    }
    try {
      s.router = await ControlRouter.bind(rundir, {
        onFrame: (id, frame) => s.onFrame(id, frame),
        onError: (err) => s.deliver({ type: 'FAIL', reason: `control link: ${err.message}` }),
        onUnreachable: (id) => s.onUnreachable(Number(id)),
      });
    } catch (err) {
      s.auth.close();
      s.execWatch?.close();
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
    if (this.execed.has(dumped)) return; // its program has no control link
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
    if (n <= 100) this.settings.logger.warn({ reason }, 'control link: frame ignored');
    if (reason === undefined || (n > 100 && n % 1000 !== 0)) return;
    this.recorder?.note('coordinator', 'frame-ignored', {
      ignored: { reason: `${reason} (${n} ignored so far)` },
    });
  }

  /** A worker is its own machine; a zombie runs none: its event goes to its parent's. */
  private noteSpawn(
    task: number,
    pid: number,
    ppid: number,
    role: 'worker' | 'zombie',
    parent?: number,
  ): void {
    this.parentPid.set(pid, ppid);
    const zombie = role === 'zombie' && parent !== undefined;
    this.recorder?.note(
      `task:${zombie ? parent : task}`,
      'process',
      { process: { action: 'spawn', role, pid, ppid, task, startTime: Date.now() } },
      zombie ? ppid : pid,
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
    if (t.kind !== undefined && t.kind !== 'state') return this.workerNote(message);
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

  /** A worker's own added event (temp process, fd transfer), at the worker's time. */
  private workerNote(message: Extract<WorkerMessage, { type: 'TRACE' }>): void {
    const t = message.trace;
    const note = parseWorkerNote(t.kind ?? '', t.data ?? '', t.timeMs);
    if (typeof note === 'string') return this.frameIgnored(`task ${message.pid}: ${note}`);
    const added = note.kind === 'process' ? { process: note.process } : { transfer: note.transfer };
    this.recorder?.note(
      `task:${message.pid}`,
      note.kind,
      added,
      this.registry.restoredOf(message.pid),
      {
        time: note.time,
        ...(note.details ? { details: note.details } : {}),
      },
    );
  }

  private classifyReport(message: Extract<WorkerMessage, { type: 'FD_REPORT' }>): void {
    let classified: ReturnType<ReportGate['add']>;
    try {
      classified = this.reports.add(message);
    } catch (err) {
      return this.deliver({ type: 'FAIL', reason: `verification: ${(err as Error).message}` });
    }
    if (classified.length === 0) this.deliver({ type: 'REPORT_HELD', pid: message.report.pid });
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
      this.noteSpawn(c.dumped, c.restored, parent, worker ? 'worker' : 'zombie', message.pid);
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
        this.settings.logger.debug(
          { step: 'spawn', task: m.pid, worker: m.restoredPid },
          `spawn: task ${m.pid} registered (pid ${m.restoredPid})`,
        );
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
    const pid = this.tree.spawnRoot({
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
    if (settings.pidnsNew) this.ns = new PidnsView(pid);
    this.noteSpawn(root.pid, pid, process.pid, 'worker');
    settings.logger.info(
      { step: 'spawn', task: root.pid, worker: pid },
      `spawn: root worker, pid ${pid}`,
    );
    this.admit(() => this.registry.expect([{ dumped: root.pid, restored: pid }]));
    // In a new pid namespace the root is its init: pid 1 there, as the workers see it.
    return { restoredPid: settings.pidnsNew ? 1 : pid };
  };

  /** Awaits the caller's hook, if any; `{ abort }` or a throw stops the restore. */
  private runHook = async (input: RunHookInput, signal: AbortSignal): Promise<RunHookOutput> => {
    const hook = this.settings.hooks[input.hook];
    if (hook === undefined) return {};
    const root = this.plan.rootPid;
    const result = await hook({
      hook: input.hook,
      pidMap: input.pidMap,
      rootPid: restoredPid(input.pidMap, root) ?? 0,
      dumpedRootPid: root,
      runDir: this.rundir,
      differences: input.differences,
      signal,
    });
    if (result !== null && typeof result === 'object' && 'abort' in result)
      return { abort: textOf(result.abort) || 'no reason given' };
    return {};
  };

  private sendFrame(to: number, frame: Uint8Array): void {
    if (this.execed.has(to)) return;
    void this.router.send(String(to), frame);
  }

  /** Worker `dumped` is its host program now: its parent may exec once all its children did. */
  private onExec(dumped: number): void {
    if (this.execed.has(dumped)) return;
    this.execed.add(dumped);
    this.deliver({ type: 'HANDED_OFF', pid: dumped });
    const parent = this.plan.tasks.find((t) => t.pid === dumped)?.ppid;
    if (parent !== undefined) this.sendHandoffIfReady(parent);
  }

  /** The HANDOFF of each worker, made once verified (startHandoff). */
  private handoffs = new Map<number, HandoffMessage>();
  private handoffSent = new Set<number>();

  /**
   * Each worker's HANDOFF: its batches for the host's socket, its program. With exec they
   * go bottom-up: a worker gets its HANDOFF once every worker child of it has exec'd. A
   * parent's program may exit at once (PDEATHSIG of a child still a worker would kill
   * it), and a child never loses its parent to an exec in the middle of its own.
   */
  private startHandoff({ pidMap }: StartHandoffParams): void {
    const h = this.settings.handoff;
    if (h === undefined) return;
    const env = Object.entries(process.env)
      .filter(([k, v]) => v !== undefined && k !== WORKER_ENV && k !== FAULT_ENV)
      .map(([k, v]) => `${k}=${v}`);
    for (const dumped of this.registry.accepted()) {
      this.handoffs.set(dumped, {
        type: 'HANDOFF',
        socketPath: h.socketPath ?? '',
        batches: h.socketPath === undefined ? [] : handoffBatches(this.image, pidMap, dumped),
        execArgv: h.exec === undefined ? [] : expandExec(h.exec, this.image, pidMap, dumped),
        execEnv:
          h.exec === undefined
            ? []
            : [
                ...env,
                `PIDFD_CR_DUMPED_PID=${dumped}`,
                `PIDFD_CR_RESTORED_PID=${this.registry.restoredOf(dumped) ?? 0}`,
              ],
      });
    }
    for (const dumped of this.handoffs.keys()) this.sendHandoffIfReady(dumped);
  }

  private sendHandoffIfReady(dumped: number): void {
    const message = this.handoffs.get(dumped);
    if (message === undefined || this.handoffSent.has(dumped)) return;
    if (this.settings.handoff?.exec !== undefined) {
      const task = this.plan.tasks.find((t) => t.pid === dumped);
      if (task?.workerChildren.some((c) => !this.execed.has(c.pid))) return;
    }
    this.handoffSent.add(dumped);
    this.sendFrame(dumped, encodeToWorker(message));
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

  /** --pidns new: the external targets' files, opened out here (external-send.ts). */
  private sendExternals(pidMap: PidMap): void {
    try {
      sendCoordinatorFiles(this.plan, pidMap, this.rundir, (inner) =>
        this.ns ? this.ns.outerOf(inner) : inner,
      );
    } catch (err) {
      // Not from inside the machine's own transition: the FAIL is its next event.
      queueMicrotask(() => this.deliver({ type: 'FAIL', reason: (err as Error).message }));
    }
  }

  private machine() {
    return coordinatorMachine.provide({
      actors: {
        spawnRoot: fromPromise<SpawnRootOutput, SpawnRootInput>(({ input }) =>
          this.spawnRoot(input),
        ),
        runHook: fromPromise<RunHookOutput, RunHookInput>(({ input, signal }) =>
          this.runHook(input, signal),
        ),
        abortTree: fromPromise<void, AbortTreeInput>(async () => {
          this.tree.abort();
          // Exec'd programs do not know TEARDOWN.
          for (const d of this.execed) this.tree.monitor.kill(d);
          await this.takeDown(true);
        }),
        tearDownTree: fromPromise<void, TearDownTreeInput>(() => this.takeDown()),
        endExecTree: fromPromise<void, TearDownTreeInput>(() => this.tree.takeDown(0)),
      },
      actions: {
        sendToWorker: (_, p: { to: number; message: CoordinatorMessage }) =>
          this.sendFrame(p.to, encodeToWorker(p.message)),
        broadcast: (_, p: { message: CoordinatorMessage }) => {
          // One encoding for all: GO carries the whole pid map.
          const frame = encodeToWorker(p.message);
          for (const pid of this.registry.accepted()) this.sendFrame(pid, frame);
          if (p.message.type === 'GO') this.sendExternals(p.message.pidMap);
        },
        startHandoff: (_, p: StartHandoffParams) => this.startHandoff(p),
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
          ...(this.settings.handoff
            ? {
                handoff: {
                  socket: this.settings.handoff.socketPath !== undefined,
                  exec: this.settings.handoff.exec !== undefined,
                  detach: this.settings.handoff.detach,
                },
              }
            : {}),
        },
        ...(this.trace ? { inspect: traceInspector('coordinator', this.trace) } : {}),
      });
      this.actor = actor;
      const steps = stepLogger(this.settings.logger);
      steps(actor.getSnapshot());
      actor.subscribe({
        next: steps,
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
    const detached = this.actor?.getSnapshot().output?.detached === true;
    this.actor?.stop();
    this.execWatch?.close();
    // Detached: the tree is the host's now; we only let go of it.
    if (detached) this.tree.release();
    else await this.tree.close();
    this.auth?.close();
    await this.router.close();
  }
}
