/**
 * restoreImage: the library entry of a restore (embeddable: no process.exit, no argv).
 * It plans, makes a private run directory, binds the ZeroMQ ROUTER, runs the coordinator
 * machine with the real effects (spawning the root worker, watching every worker through
 * a pidfd, tearing the tree down), and removes everything it made, on success and on
 * every failure. See docs/restore.md.
 */
import { createActor } from 'xstate';
import { waitPidfd, WEXITED } from '../../native/index.js';
import { PcrError } from '../errors.js';
import type { Image } from '../image/model.js';
import { planRestore } from '../plan/planner.js';
import type { RestorePlan } from '../plan/types.js';
import type { PidMap, WorkerMessage, CoordinatorMessage } from '../plan/messages.js';
import type { Difference } from '../plan/verify.js';
import { encodeToWorker, decodeToCoordinator } from '../plan/wire.js';
import {
  coordinatorMachine,
  type AbortReason,
  type CoordinatorOutput,
  type SpawnRootInput,
  type SpawnRootOutput,
  type AbortTreeInput,
  type TearDownTreeInput,
} from '../machines/coordinator.js';
import { fromPromise } from 'xstate';
import { spawnWorker } from '../actors/spawn-worker.js';
import { bootId, hasDacOverride } from '../actors/open-files.js';
import { ControlRouter } from './zmq-link.js';
import { makeRundir, removeRundir } from './rundir.js';
import { WorkerMonitor } from './monitor.js';
import { writePidMapFile } from './pid-map-file.js';
import { traceInspector, TRACE_VERSION, type TraceSink, type TraceDetails } from './trace.js';
import { Registry } from './registry.js';
import { writeSpawnPlan } from '../worker/prespawn.js';

export interface RestoreOptions {
  /** Keep the restored tree until `signal` aborts, instead of tearing it down at once. */
  hold?: boolean;
  /** Longest wait for registration and for each phase (default 30 s). */
  timeoutMs?: number;
  /** Receives every state change of every machine. */
  trace?: TraceSink;
  /** With `trace`: also the workers' state changes (default true; costs messages). */
  traceWorkers?: boolean;
  /** Write the pid map here (JSON, atomically) once verified. */
  pidMapPath?: string;
  /** Plan external targets as dead (SIGKILLed temp) instead of reopening them. */
  externalDead?: boolean;
  /** Stops a restore in progress, or ends a held tree. */
  signal?: AbortSignal;
  /** Called once verification ran (before holding), with the pid map and differences. */
  onVerified?: (result: { pidMap: PidMap; differences: Difference[] }) => void;
  /** Our fd that workers get as stderr (default 2; null: /dev/null). */
  workerStderr?: number | null;
  /** Parent of the private run directory (default os.tmpdir()). */
  runDirParent?: string;
  /** TEST HOOK: PCR_FAULT for the workers (docs/restore.md). */
  fault?: string;
  /** How long teardown waits for workers to leave before SIGKILL (default 3 s). */
  teardownGraceMs?: number;
}

export interface RestoreResult {
  /** Restored and verified without a difference. */
  ok: boolean;
  pidMap: PidMap;
  differences: Difference[];
  plan: RestorePlan;
}

export async function restoreImage(
  image: Image,
  options: RestoreOptions = {},
): Promise<RestoreResult> {
  const plan = planRestore(image, {
    externalDead: options.externalDead ?? false,
    currentBootId: bootId(),
    unprivileged: !hasDacOverride(),
  });
  const rundir = makeRundir(options.runDirParent);
  let session: Session | undefined;
  try {
    writeSpawnPlan(rundir, plan);
    session = await Session.open(image, plan, rundir, options);
    const output = await session.run();
    if (output.failure) throw abortError(output.failure);
    return { ok: output.ok, pidMap: output.pidMap, differences: output.differences, plan };
  } finally {
    await session?.close();
    removeRundir(rundir);
  }
}

function abortError(f: AbortReason): PcrError {
  return new PcrError(f.code, `restore aborted in phase ${f.phase}: ${f.message}`);
}

/** One restore in progress: the socket, the machine, the watched workers. */
class Session {
  private readonly registry = new Registry();
  private readonly monitor: WorkerMonitor;
  private rootPidfd = -1;
  private rootPid = 0;
  private actor: ReturnType<typeof createActor<typeof coordinatorMachine>> | undefined;
  private router!: ControlRouter;

  private constructor(
    private readonly image: Image,
    private readonly plan: RestorePlan,
    private readonly rundir: string,
    private readonly options: RestoreOptions,
  ) {
    this.monitor = new WorkerMonitor((dumped, status) =>
      this.deliver({ type: 'WORKER_EXITED', pid: dumped, status }),
    );
  }

  static async open(
    image: Image,
    plan: RestorePlan,
    rundir: string,
    options: RestoreOptions,
  ): Promise<Session> {
    const s = new Session(image, plan, rundir, options);
    s.router = await ControlRouter.bind(rundir, {
      onFrame: (id, frame) => s.onFrame(id, frame),
      onError: (err) => s.deliver({ type: 'STOP', reason: `control link: ${err.message}` }),
    });
    return s;
  }

  private deliver(event: Parameters<NonNullable<typeof this.actor>['send']>[0]): void {
    if (this.actor?.getSnapshot().status === 'active') this.actor.send(event);
  }

  private traceWorker(message: Extract<WorkerMessage, { type: 'TRACE' }>): void {
    const t = message.trace;
    let details: TraceDetails = {};
    try {
      details = JSON.parse(t.details) as TraceDetails;
    } catch {
      details = { error: `unparsable details: ${t.details}` };
    }
    this.options.trace?.({
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
    if (message.type === 'TRACE') return this.traceWorker(message);
    if (message.type === 'WORKER_HELLO') {
      for (const hello of this.registry.hello(message)) this.deliver(hello);
      return;
    }
    if (message.type === 'CHILDREN_SPAWNED') {
      const workers = new Set(this.plan.tasks.map((t) => t.pid));
      for (const c of message.children) {
        if (workers.has(c.dumped)) this.watch(c.dumped, c.restored);
      }
      this.deliver(message);
      for (const hello of this.registry.expect(message.children)) this.deliver(hello);
      return;
    }
    this.deliver(message);
  }

  private watch(dumped: number, restored: number): void {
    try {
      this.monitor.add(dumped, restored);
    } catch {
      // already gone: ESRCH. Its parent still holds it as a zombie, so this is rare;
      // registration then times out naming it.
    }
  }

  private spawnRoot = async ({ root }: SpawnRootInput): Promise<SpawnRootOutput> => {
    const w = spawnWorker({
      dumpedPid: root.pid,
      rundir: this.rundir,
      reservedFds: root.reservedFds,
      stderrFd: this.options.workerStderr === undefined ? 2 : this.options.workerStderr,
      trace: this.options.trace !== undefined && this.options.traceWorkers !== false,
      ...(this.options.fault ? { fault: this.options.fault } : {}),
    });
    this.rootPid = w.pid;
    this.rootPidfd = w.pidfd;
    this.monitor.add(root.pid, w.pid, w.pidfd);
    for (const hello of this.registry.expect([{ dumped: root.pid, restored: w.pid }])) {
      this.deliver(hello);
    }
    return { restoredPid: w.pid };
  };

  private send(to: number, message: CoordinatorMessage): void {
    void this.router.send(String(to), encodeToWorker(message));
  }

  /** Waits for every worker to leave (grace), SIGKILLs the rest, reaps the root. */
  private async takeDown(graceMs: number): Promise<void> {
    if (!(await this.monitor.waitAllExited(graceMs))) {
      this.monitor.killAll();
      await this.monitor.waitAllExited(10_000);
    }
    this.reapRoot();
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
    await this.takeDown(this.options.teardownGraceMs ?? 3000);
  };

  private abortTree = async (_: AbortTreeInput): Promise<void> => {
    await this.takeDown(Math.min(this.options.teardownGraceMs ?? 3000, 1000));
  };

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
          for (const pid of this.registry.accepted()) this.send(pid, p.message);
        },
        reportResult: (_, p: { pidMap: PidMap; differences: Difference[] }) => {
          if (this.options.pidMapPath) writePidMapFile(this.options.pidMapPath, p.pidMap);
          this.options.onVerified?.(p);
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
        ...(this.options.trace
          ? { inspect: traceInspector('coordinator', this.options.trace) }
          : {}),
      });
      this.actor = actor;
      actor.subscribe({
        complete: () => resolve(actor.getSnapshot().output!),
        error: reject,
      });
      const signal = this.options.signal;
      const onAbort = (): void =>
        this.deliver({ type: 'STOP', reason: String(signal?.reason ?? 'stopped') });
      signal?.addEventListener('abort', onAbort, { once: true });
      actor.start();
      if (signal?.aborted) onAbort();
    });
  }

  async close(): Promise<void> {
    this.actor?.stop();
    // Whatever path we came by, no worker outlives the restore.
    if (this.monitor.alive().length > 0 || this.rootPidfd >= 0) {
      this.monitor.killAll();
      await this.monitor.waitAllExited(10_000);
      this.reapRoot();
    }
    this.monitor.close();
    this.rootPidfd = -1;
    await this.router.close();
  }
}
