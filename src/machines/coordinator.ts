/**
 * The coordinator machine: registers every worker, sends the one GO, collects the fd
 * report each task sends as soon as its own steps are done, and compares them with the
 * image. Pure: the ZeroMQ
 * socket, process spawning and killing are named actors/actions the coordinator runtime
 * provides (`coordinatorMachine.provide`). See docs/machines.md.
 */
import { notProvided } from './not-provided.js';
import { assign, fromPromise, setup } from 'xstate';
import type { DoneActorEvent, ErrorActorEvent } from 'xstate';
import type { Image } from '../model/image.js';
import type { PcrErrorCode } from '../errors.js';
import { PcrError } from '../errors.js';
import type {
  ChildrenSpawned,
  CoordinatorMessage,
  FdReport,
  FdReportMessage,
  HandedOff,
  PidMap,
  PidPair,
  StepMessage,
  WorkerFailed,
  WorkerHello,
} from '../protocol/messages.js';
import { EMPTY_PID_MAP, restoredPid, withPairs } from '../protocol/pidmap.js';
import { PHASES } from '../plan/types.js';
import type { BroadcastPhase, Phase, RestorePlan, WorkerChild } from '../plan/types.js';
import { compareReports } from '../verify/compare.js';
import type { Difference } from '../verify/compare.js';
import { describeFailure } from './failure.js';
import { describeWaitStatus } from '../plan/status.js';

export interface CoordinatorInput {
  image: Image;
  plan: RestorePlan;
  /** Longest wait for registration, for the reports after GO, and for each hook. */
  phaseTimeoutMs: number;
  /** Keep the restored tree until STOP instead of tearing it down after verification. */
  hold: boolean;
  /** Hand the verified pidfds off (docs/restore.md "Hand-off"); undefined: no hand-off. */
  handoff?: HandoffMode;
}

/** What the hand-off after verification does. */
export interface HandoffMode {
  /** Workers send their pidfds to the host's socket. */
  socket: boolean;
  /** Workers exec the host's programs (then the tree is the host's). */
  exec: boolean;
  /** With exec: end once every task exec'd, leaving the tree running. */
  detach: boolean;
}

/** Why a restore was aborted: names the task (when one is at fault), the phase, the cause. */
export interface AbortReason {
  code: PcrErrorCode;
  phase: Phase;
  pid?: number;
  message: string;
  /** It happened while the verified tree was held. */
  held?: true;
  /** It happened while the tree ran the host's --exec programs. */
  execd?: true;
}

export interface CoordinatorContext {
  image: Image;
  plan: RestorePlan;
  phaseTimeoutMs: number;
  hold: boolean;
  handoff: HandoffMode | undefined;
  /** Tasks that handed off (sent to the socket, or exec'd when exec is asked). */
  handedOff: number[];
  /** The caller's STOP came during a hand-off that ends in a hold: ends it at once. */
  stopAfterHandoff?: true;
  /** Wait status of the root's program once it exited (exec without detach). */
  rootStatus?: number;
  phase: Phase;
  /** Restored pids as the workers say them (WORKER_HELLO). */
  hello: PidPair[];
  /** Workers that reported CHILDREN_SPAWNED. */
  spawned: number[];
  /** Restored pids as their parents (or spawnRoot) report them, and planned threads. */
  pidMap: PidMap;
  /** After GO: where each worker is (its last STEP), or reported. */
  at: Record<number, TaskStep>;
  reports: FdReport[];
  differences: Difference[];
  failure?: AbortReason;
}

/** Where a task is after GO: the phase of its step, or its report is in. */
export type TaskStep = BroadcastPhase | 'reported';

/** The runtime holds a worker's FD_REPORT until every report is in (report-gate.ts). */
export interface ReportHeld {
  type: 'REPORT_HELD';
  pid: number;
}

export interface WorkerExited {
  type: 'WORKER_EXITED';
  /** Dumped pid of the worker. */
  pid: number;
  /** Wait status word. */
  status: number;
}

/** The caller stops the restore, or ends a held tree (its signal). */
export interface StopEvent {
  type: 'STOP';
  reason: string;
}

/** The runtime found a failure (control link, a caller callback, verification input). */
export interface FailEvent {
  type: 'FAIL';
  reason: string;
}

export type CoordinatorEvent =
  | WorkerHello
  | ChildrenSpawned
  | StepMessage
  | ReportHeld
  | WorkerFailed
  | FdReportMessage
  | WorkerExited
  | HandedOff
  | StopEvent
  | FailEvent;

export interface CoordinatorOutput {
  /** Restored, and no difference found. */
  ok: boolean;
  pidMap: PidMap;
  differences: Difference[];
  failure?: AbortReason;
  /** Exec without detach: the root program's wait status once it exited. */
  rootStatus?: number;
  /** Exec with detach: the tree runs on as the host's programs. */
  detached: boolean;
}

export interface SpawnRootInput {
  root: WorkerChild;
}
export interface SpawnRootOutput {
  restoredPid: number;
}
export interface AbortTreeInput {
  pidMap: PidMap;
  reason: AbortReason;
}
export interface TearDownTreeInput {
  pidMap: PidMap;
}
export interface StartHandoffParams {
  pidMap: PidMap;
  reports: FdReport[];
}

/**
 * The points where the restore waits for its host (restoreImage's `hooks`, the CLI's
 * action scripts, swrk notifications), in the order they come:
 * - treeBuilt: every task registered, the pid map known, no pidfd opened yet;
 * - verified: every pidfd restored and the reports compared (the differences);
 * - beforeHandoff: right after verified, before the tree is held or handed off;
 * - beforeTeardown: the verified tree is about to be taken down (after the hold ends).
 * A failed restore runs none of the later ones: it is taken down at once.
 */
export const HOOK_NAMES = ['treeBuilt', 'verified', 'beforeHandoff', 'beforeTeardown'] as const;
export type HookName = (typeof HOOK_NAMES)[number];

export interface RunHookInput {
  hook: HookName;
  pidMap: PidMap;
  /** From verified on: what verification found (empty: the tree is the image). */
  differences: Difference[] | undefined;
}
/** A hook resolves (the restore goes on) or says why the restore must stop. */
export interface RunHookOutput {
  abort?: string;
}

export const coordinatorActorPlaceholders = {
  spawnRoot: fromPromise<SpawnRootOutput, SpawnRootInput>(notProvided('spawnRoot')),
  runHook: fromPromise<RunHookOutput, RunHookInput>(notProvided('runHook')),
  abortTree: fromPromise<void, AbortTreeInput>(notProvided('abortTree')),
  tearDownTree: fromPromise<void, TearDownTreeInput>(notProvided('tearDownTree')),
  /** Kills what is left of an exec'd tree (its programs do not know TEARDOWN). */
  endExecTree: fromPromise<void, TearDownTreeInput>(notProvided('endExecTree')),
};

const workerPids = (plan: RestorePlan) => plan.tasks.map((t) => t.pid);

/** Every task pid the map must hold: workers and zombies. */
function allTaskPids(plan: RestorePlan): number[] {
  return plan.tasks.flatMap((t) => [t.pid, ...t.zombieChildren.map((z) => z.pid)]);
}

/** A registration that cannot be right (unknown worker, pids that disagree), or undefined. */
export function registrationProblem(context: CoordinatorContext): string | undefined {
  const workers = new Set(workerPids(context.plan));
  for (const h of context.hello) {
    if (!workers.has(h.dumped)) return `a worker registered as unknown task ${h.dumped}`;
    const reported = restoredPid(context.pidMap, h.dumped);
    if (reported !== undefined && reported !== h.restored) {
      return `task ${h.dumped} registered as pid ${h.restored} but was spawned as pid ${reported}`;
    }
  }
  return undefined;
}

/** Tasks (dumped pids) and threads (dumped tids) not registered yet. */
export function missingRegistrations(context: CoordinatorContext): string[] {
  const has = (pairs: PidPair[], id: number) => pairs.some((p) => p.dumped === id);
  // One entry per task, with every reason it is missing (in plan order).
  const tasks = new Map<number, string[]>();
  const note = (pid: number, why: string) => tasks.set(pid, [...(tasks.get(pid) ?? []), why]);
  for (const t of context.plan.tasks) {
    if (!has(context.hello, t.pid)) note(t.pid, 'no hello');
    else if (!context.spawned.includes(t.pid)) note(t.pid, 'children not spawned');
  }
  for (const pid of allTaskPids(context.plan)) {
    if (!has(context.pidMap.pids, pid)) note(pid, 'no restored pid');
  }
  const missing = [...tasks].map(([pid, why]) => `task ${pid} (${why.join(', ')})`);
  for (const tid of context.plan.tasks.flatMap((t) => t.threads)) {
    if (!has(context.pidMap.tids, tid)) missing.push(`thread ${tid}`);
  }
  return missing;
}

/**
 * The restore's phase after GO: the earliest phase (in PHASES order) any task whose
 * report is not in is at; verify once every report is in.
 */
export function phaseOf(plan: RestorePlan, at: Record<number, TaskStep>): Phase {
  let first: Phase = 'verify';
  for (const pid of workerPids(plan)) {
    const step = at[pid];
    if (step === undefined || step === 'reported') continue;
    if (PHASES.indexOf(step) < PHASES.indexOf(first)) first = step;
  }
  return first;
}

/** Where task `pid` is: its step after GO, else the restore's phase. */
function phaseOfTask(context: CoordinatorContext, pid: number): Phase {
  const step = context.at[pid];
  return step === undefined ? context.phase : step === 'reported' ? 'verify' : step;
}

/**
 * Tasks whose report is not in, with the phase of their step; a task that waits for fds
 * or a creator's notice from other such tasks says so, so the stuck task stands out.
 */
export function pendingTasks(context: CoordinatorContext): string[] {
  const pending = workerPids(context.plan).filter((p) => context.at[p] !== 'reported');
  return pending.map((pid) => {
    const task = context.plan.tasks.find((t) => t.pid === pid);
    const step = context.at[pid] ?? 'open-alive';
    const from = [
      ...(task?.steps['open-alive'].receives ?? []),
      ...(task?.steps.dead.receives ?? []),
    ].map((r) => r.from);
    const peers = [...new Set(from)].filter((p) => pending.includes(p) && p !== pid);
    const waits =
      (step === 'open-alive' || step === 'dead' || step === 'kill-temp') && peers.length > 0
        ? `, may wait for ${peers.map((p) => `task ${p}`).join(', ')}`
        : '';
    return `task ${pid} (in ${step}${waits})`;
  });
}

/** GO with the pid map to every worker. */
const broadcastGo = {
  type: 'broadcast',
  params: ({ context }: { context: CoordinatorContext }) => ({
    message: { type: 'GO', pidMap: context.pidMap } satisfies CoordinatorMessage,
  }),
} as const;

/** ASSIGN the plan of the worker that said hello. */
const sendAssign = {
  type: 'sendToWorker',
  params: ({ context, event }: { context: CoordinatorContext; event: CoordinatorEvent }) => {
    const pid = event.type === 'WORKER_HELLO' ? event.pid : 0;
    const plan = context.plan.tasks.find((t) => t.pid === pid);
    if (plan === undefined) throw new PcrError('PCR_ERR_INTERNAL', `no plan for task ${pid}`);
    return { to: pid, message: { type: 'ASSIGN', plan } satisfies CoordinatorMessage };
  },
} as const;

function abortReason(
  context: CoordinatorContext,
  message: string,
  code: PcrErrorCode = 'PCR_ERR_RESTORE',
  pid?: number,
): AbortReason {
  return { code, phase: context.phase, message, ...(pid === undefined ? {} : { pid }) };
}

type Registration = Pick<CoordinatorContext, 'hello' | 'spawned' | 'pidMap'>;

/**
 * The registration state after `event` (WORKER_HELLO, CHILDREN_SPAWNED or spawnRoot's done
 * event). Pure: guards judge the registration this would make before the action makes it.
 */
export function applyRegistration(context: CoordinatorContext, event: unknown): Registration {
  const { hello, spawned, pidMap } = context;
  const e = event as CoordinatorEvent | DoneActorEvent<SpawnRootOutput, string>;
  switch (e.type) {
    case 'WORKER_HELLO':
      return {
        hello: withPairs(hello, [{ dumped: e.pid, restored: e.restoredPid }]),
        spawned,
        pidMap,
      };
    case 'CHILDREN_SPAWNED':
      return {
        hello,
        spawned: spawned.includes(e.pid) ? spawned : [...spawned, e.pid],
        pidMap: {
          pids: withPairs(pidMap.pids, e.children),
          tids: withPairs(pidMap.tids, e.threads),
        },
      };
    case 'xstate.done.actor.spawnRoot': {
      const root = { dumped: context.plan.rootPid, restored: e.output.restoredPid };
      return { hello, spawned, pidMap: { ...pidMap, pids: withPairs(pidMap.pids, [root]) } };
    }
    default:
      return { hello, spawned, pidMap };
  }
}

const registered = (context: CoordinatorContext, event: unknown): CoordinatorContext => ({
  ...context,
  ...applyRegistration(context, event),
});

const errorText = (event: unknown): string => {
  const error = (event as ErrorActorEvent).error;
  return error instanceof Error ? error.message : String(error);
};

const hookAbortText = (event: unknown): string | undefined =>
  (event as DoneActorEvent<RunHookOutput | undefined>).output?.abort;

/** Invoke ids of the hook states (one per hook: visualizers and graph paths see which). */
const hookInvokeId = (hook: HookName) => `hook${hook[0]!.toUpperCase()}${hook.slice(1)}`;

/**
 * Waits for one hook (the runtime's `runHook`), bounded by the phase timeout; an abort
 * or a throw fails the restore naming the hook. `next` is where the restore goes on.
 */
function hookState<T extends readonly object[], O extends object = object>(
  hook: HookName,
  next: T,
  on?: O,
) {
  return {
    ...(on === undefined ? {} : { on }),
    invoke: {
      id: hookInvokeId(hook),
      src: 'runHook',
      input: ({ context }: { context: CoordinatorContext }): RunHookInput => ({
        hook,
        pidMap: context.pidMap,
        differences: hook === 'treeBuilt' ? undefined : context.differences,
      }),
      onDone: [
        {
          guard: 'hookAborted',
          target: '#coordinator.aborting',
          actions: { type: 'recordHookAbort', params: { hook } },
        },
        ...next,
      ],
      onError: {
        target: '#coordinator.aborting',
        actions: { type: 'recordHookError', params: { hook } },
      },
    },
    after: {
      phaseTimeout: {
        target: '#coordinator.aborting',
        actions: { type: 'hookTimedOut', params: { hook } },
      },
    },
  } as const;
}
/** restore --same-pids: the root's pid taken, no privilege, a race lost keep their codes. */
const pidErrorCode = (event: unknown): PcrErrorCode | undefined => {
  const error = (event as ErrorActorEvent).error;
  return error instanceof PcrError && error.code.startsWith('PCR_ERR_PID_')
    ? error.code
    : undefined;
};

export const coordinatorMachine = setup({
  types: {
    input: {} as CoordinatorInput,
    context: {} as CoordinatorContext,
    events: {} as CoordinatorEvent,
    output: {} as CoordinatorOutput,
  },
  actors: coordinatorActorPlaceholders,
  actions: {
    /** Sends one message to one worker (routing id = its dumped pid). Runtime-provided. */
    sendToWorker: (_, _params: { to: number; message: CoordinatorMessage }) => {},
    /** Sends one message to every registered worker. Runtime-provided. */
    broadcast: (_, _params: { message: CoordinatorMessage }) => {},
    /** Sends each worker its HANDOFF (batches for the host, program to exec). Runtime-provided. */
    startHandoff: (_, _params: StartHandoffParams) => {},
    /** Announces the verification result (before holding). Runtime-provided. */
    reportResult: (_, _params: { pidMap: PidMap; differences: Difference[] }) => {},
    recordRegistration: assign(({ context, event }) => applyRegistration(context, event)),
    recordRegistrationProblem: assign({
      failure: ({ context, event }) =>
        abortReason(context, registrationProblem(registered(context, event)) ?? ''),
    }),
    recordRegistrationTimeout: assign({
      failure: ({ context }) =>
        abortReason(
          context,
          `timed out after ${context.phaseTimeoutMs} ms waiting for ${missingRegistrations(context).join(', ')}`,
          'PCR_ERR_TIMEOUT',
        ),
    }),
    recordSpawnRootError: assign({
      failure: ({ context, event }) =>
        abortReason(
          context,
          `spawning the root task ${context.plan.rootPid} failed: ${errorText(event)}`,
          pidErrorCode(event) ?? 'PCR_ERR_RESTORE',
          context.plan.rootPid,
        ),
    }),
    /** GO goes out: every task starts in open-alive. */
    startTasks: assign(({ context }) => ({
      phase: 'open-alive' as const,
      at: Object.fromEntries(workerPids(context.plan).map((p) => [p, 'open-alive' as const])),
    })),
    /** A task's STEP, or its report held by the runtime: where it is now. */
    recordStep: assign(({ context }, params: { pid: number; step: TaskStep }) => {
      if (context.at[params.pid] === 'reported') return {};
      const at = { ...context.at, [params.pid]: params.step };
      return { at, phase: phaseOf(context.plan, at) };
    }),
    phaseTimedOut: assign({
      failure: ({ context }) =>
        abortReason(
          context,
          `phase ${context.phase} timed out after ${context.phaseTimeoutMs} ms waiting for ${pendingTasks(context).join(', ')}`,
          'PCR_ERR_TIMEOUT',
        ),
    }),
    recordReport: assign(({ context }, params: { report: FdReport }) => {
      const at = { ...context.at, [params.report.pid]: 'reported' as const };
      return {
        reports: [...context.reports.filter((r) => r.pid !== params.report.pid), params.report],
        at,
        phase: phaseOf(context.plan, at),
      };
    }),
    compareReports: assign({
      differences: ({ context }) =>
        compareReports(context.image, context.pidMap, context.reports, {
          externalDead: context.plan.externalDead,
          pidnsNew: context.plan.pidnsNew ?? false,
        }),
    }),
    recordWorkerFailed: assign({
      failure: ({ context, event }) =>
        event.type === 'WORKER_FAILED'
          ? {
              code: event.failure.code,
              phase: event.failure.phase,
              pid: event.pid,
              message: describeFailure(event.pid, event.failure),
            }
          : context.failure,
    }),
    recordWorkerExited: assign({
      failure: ({ context, event }) =>
        event.type === 'WORKER_EXITED'
          ? abortReason(
              { ...context, phase: phaseOfTask(context, event.pid) },
              `task ${event.pid} exited (${describeWaitStatus(event.status)}) during phase ${phaseOfTask(context, event.pid)}`,
              'PCR_ERR_TASK_EXITED',
              event.pid,
            )
          : context.failure,
    }),
    recordStop: assign({
      failure: ({ context, event }) =>
        abortReason(
          context,
          `stopped during phase ${context.phase}${event.type === 'STOP' || event.type === 'FAIL' ? `: ${event.reason}` : ''}`,
        ),
    }),
    /** A task of the verified tree died, or the runtime failed, while the tree was held. */
    recordLostInHold: assign({
      failure: ({ context, event }): AbortReason => {
        const base = {
          code: 'PCR_ERR_TASK_EXITED' as const,
          phase: context.phase,
          held: true as const,
        };
        if (event.type === 'WORKER_EXITED') {
          const restored = restoredPid(context.pidMap, event.pid);
          return {
            ...base,
            pid: event.pid,
            message: `task ${event.pid}${restored === undefined ? '' : ` (pid ${restored})`} exited (${describeWaitStatus(event.status)})`,
          };
        }
        if (event.type === 'WORKER_FAILED')
          return {
            ...base,
            pid: event.pid,
            message: `task ${event.pid} failed: ${event.failure.message}`,
          };
        return {
          ...base,
          code: 'PCR_ERR_RESTORE',
          message: event.type === 'FAIL' ? event.reason : 'failed',
        };
      },
    }),
    recordHookAbort: assign({
      failure: ({ context, event }, params: { hook: HookName }) =>
        abortReason(
          context,
          `hook ${params.hook} aborted the restore: ${hookAbortText(event) ?? ''}`,
          'PCR_ERR_HOOK_ABORTED',
        ),
    }),
    recordHookError: assign({
      failure: ({ context, event }, params: { hook: HookName }) =>
        abortReason(
          context,
          `hook ${params.hook} aborted the restore: ${errorText(event)}`,
          'PCR_ERR_HOOK_ABORTED',
        ),
    }),
    hookTimedOut: assign({
      failure: ({ context }, params: { hook: HookName }) =>
        abortReason(
          context,
          `hook ${params.hook} did not finish within ${context.phaseTimeoutMs} ms`,
          'PCR_ERR_TIMEOUT',
        ),
    }),
    deferStop: assign({ stopAfterHandoff: () => true as const }),
    recordHandedOff: assign({
      handedOff: ({ context, event }) =>
        event.type !== 'HANDED_OFF' || context.handedOff.includes(event.pid)
          ? context.handedOff
          : [...context.handedOff, event.pid],
    }),
    /** A task's program (after exec) exited: only the root's status matters. */
    recordHostExit: assign({
      rootStatus: ({ context, event }) =>
        event.type === 'WORKER_EXITED' && event.pid === context.plan.rootPid
          ? event.status
          : context.rootStatus,
    }),
    /** STOP or FAIL while the tree runs the host's programs: they are taken down. */
    recordStopRunning: assign({
      failure: ({ context, event }): AbortReason => ({
        code: 'PCR_ERR_RESTORE',
        phase: context.phase,
        execd: true,
        message: event.type === 'STOP' || event.type === 'FAIL' ? event.reason : 'stopped',
      }),
    }),
    handoffTimedOut: assign({
      failure: ({ context }) =>
        abortReason(
          context,
          `hand-off timed out after ${context.phaseTimeoutMs} ms waiting for ${workerPids(
            context.plan,
          )
            .filter((p) => !context.handedOff.includes(p))
            .map((p) => `task ${p}`)
            .join(', ')}`,
          'PCR_ERR_TIMEOUT',
        ),
    }),
    recordTeardownError: assign({
      failure: ({ context, event }) =>
        abortReason(context, `tearing down failed: ${errorText(event)}`),
    }),
  },
  guards: {
    /** Would this event complete the registration of every task and thread? */
    allRegistered: ({ context, event }) =>
      missingRegistrations(registered(context, event)).length === 0,
    /** Would this event make the registration wrong (unknown worker, pids disagree)? */
    registrationWrong: ({ context, event }) =>
      registrationProblem(registered(context, event)) !== undefined,
    /** Is this FD_REPORT the last one? */
    completesReports: ({ context }, params: { pid: number }) =>
      workerPids(context.plan).every(
        (p) => p === params.pid || context.reports.some((r) => r.pid === p),
      ),
    shouldHold: ({ context }) => context.hold,
    /** Did the hook that just finished say the restore must stop? */
    hookAborted: ({ event }) => hookAbortText(event) !== undefined,
    /** Verified without a difference, and a hand-off was asked. */
    shouldHandOff: ({ context }) =>
      context.handoff !== undefined && context.differences.length === 0,
    /** Is this HANDED_OFF the last one? */
    completesHandoff: ({ context, event }) =>
      event.type === 'HANDED_OFF' &&
      workerPids(context.plan).every((p) => p === event.pid || context.handedOff.includes(p)),
    /** Did this worker hand off already (so its exit is its program's, not a loss)? */
    isHandedOff: ({ context, event }) =>
      event.type === 'WORKER_EXITED' &&
      context.handoff?.exec === true &&
      context.handedOff.includes(event.pid),
    execsDetached: ({ context }) => context.handoff?.exec === true && context.handoff.detach,
    execs: ({ context }) => context.handoff?.exec === true,
    stopDeferred: ({ context }) => context.stopAfterHandoff === true,
    rootExited: ({ context }) => context.rootStatus !== undefined,
  },
  delays: {
    phaseTimeout: ({ context }) => context.phaseTimeoutMs,
  },
}).createMachine({
  id: 'coordinator',
  context: ({ input }) => ({
    image: input.image,
    plan: input.plan,
    phaseTimeoutMs: input.phaseTimeoutMs,
    hold: input.hold,
    handoff: input.handoff,
    handedOff: [],
    phase: 'spawn',
    hello: [],
    spawned: [],
    pidMap: EMPTY_PID_MAP,
    at: {},
    reports: [],
    differences: [],
  }),
  initial: 'registering',
  on: {
    WORKER_FAILED: { target: '.aborting', actions: 'recordWorkerFailed' },
    WORKER_EXITED: { target: '.aborting', actions: 'recordWorkerExited' },
    STOP: { target: '.aborting', actions: 'recordStop' },
    FAIL: { target: '.aborting', actions: 'recordStop' },
    FD_REPORT: {
      actions: { type: 'recordReport', params: ({ event }) => ({ report: event.report }) },
    },
  },
  states: {
    /** Waits for every worker's HELLO and CHILDREN_SPAWNED; answers each HELLO with ASSIGN. */
    registering: {
      invoke: {
        id: 'spawnRoot',
        src: 'spawnRoot',
        input: ({ context }) => ({
          root: {
            pid: context.plan.rootPid,
            reservedFds: context.plan.tasks[0]?.reservedFds ?? [],
          },
        }),
        onDone: [
          {
            guard: 'registrationWrong',
            target: 'aborting',
            actions: 'recordRegistrationProblem',
          },
          { guard: 'allRegistered', target: 'tree-built', actions: 'recordRegistration' },
          { actions: 'recordRegistration' },
        ],
        onError: { target: 'aborting', actions: 'recordSpawnRootError' },
      },
      on: {
        WORKER_HELLO: [
          {
            guard: 'registrationWrong',
            target: 'aborting',
            actions: 'recordRegistrationProblem',
          },
          {
            guard: 'allRegistered',
            target: 'tree-built',
            actions: ['recordRegistration', sendAssign],
          },
          { actions: ['recordRegistration', sendAssign] },
        ],
        CHILDREN_SPAWNED: [
          {
            guard: 'registrationWrong',
            target: 'aborting',
            actions: 'recordRegistrationProblem',
          },
          { guard: 'allRegistered', target: 'tree-built', actions: 'recordRegistration' },
          { actions: 'recordRegistration' },
        ],
      },
      after: { phaseTimeout: { target: 'aborting', actions: 'recordRegistrationTimeout' } },
    },
    /** Hook treeBuilt: every task registered, the pid map known, no pidfd opened yet. */
    'tree-built': hookState('treeBuilt', [{ target: 'phases' }] as const),
    /**
     * One GO to every worker; each runs its own steps and reports as soon as they are
     * done (STEPs say where each is). The last report ends it; one timeout bounds it.
     */
    phases: {
      entry: ['startTasks', broadcastGo],
      on: {
        STEP: {
          actions: {
            type: 'recordStep',
            params: ({ event }) => ({ pid: event.pid, step: event.phase }),
          },
        },
        REPORT_HELD: {
          actions: {
            type: 'recordStep',
            params: ({ event }) => ({ pid: event.pid, step: 'reported' as const }),
          },
        },
        FD_REPORT: [
          {
            guard: { type: 'completesReports', params: ({ event }) => ({ pid: event.report.pid }) },
            target: 'comparing',
            actions: { type: 'recordReport', params: ({ event }) => ({ report: event.report }) },
          },
          { actions: { type: 'recordReport', params: ({ event }) => ({ report: event.report }) } },
        ],
      },
      after: { phaseTimeout: { target: 'aborting', actions: 'phaseTimedOut' } },
    },
    /** Every report is in: compare with the image, announce, then the verified hook. */
    comparing: {
      entry: [
        'compareReports',
        {
          type: 'reportResult',
          params: ({ context }) => ({ pidMap: context.pidMap, differences: context.differences }),
        },
      ],
      always: { target: 'verified' },
    },
    /**
     * Hook verified: every pidfd restored and compared (the differences). From here on the
     * caller's STOP takes the verified tree down the normal way (it ends a hold that has
     * not quite begun), as it did when holding followed verification at once.
     */
    verified: hookState(
      'verified',
      [{ target: 'before-handoff' }] as const,
      {
        STOP: 'before-teardown',
      } as const,
    ),
    /** Hook beforeHandoff: then hold the tree, or take it down. */
    'before-handoff': hookState(
      'beforeHandoff',
      [
        { guard: 'shouldHandOff', target: 'handing-off' },
        { guard: 'shouldHold', target: 'holding' },
        { target: 'before-teardown' },
      ] as const,
      { STOP: 'before-teardown' } as const,
    ),
    /**
     * Verified: every worker gets its HANDOFF; waits until each has sent its pidfds to the
     * host (HANDED_OFF from the worker) or exec'd (HANDED_OFF from the runtime, which sees
     * the exec from outside). An exec'd program that exits already is not a loss.
     */
    'handing-off': {
      entry: {
        type: 'startHandoff',
        params: ({ context }) => ({ pidMap: context.pidMap, reports: context.reports }),
      },
      on: {
        HANDED_OFF: [
          { guard: 'completesHandoff', target: 'handed-off', actions: 'recordHandedOff' },
          { actions: 'recordHandedOff' },
        ],
        WORKER_EXITED: [
          { guard: 'isHandedOff', actions: 'recordHostExit' },
          { target: 'aborting', actions: 'recordWorkerExited' },
        ],
        // A STOP meant to end the hold that follows (the host got its pidfds and says
        // so) lets the hand-off finish, then takes the tree down the normal way.
        STOP: [
          { guard: 'shouldHold', actions: 'deferStop' },
          { target: 'aborting', actions: 'recordStop' },
        ],
      },
      after: { phaseTimeout: { target: 'aborting', actions: 'handoffTimedOut' } },
    },
    /** Every task handed off: detach, wait for the root's program, hold, or tear down. */
    'handed-off': {
      always: [
        { guard: 'stopDeferred', target: 'before-teardown' },
        { guard: 'execsDetached', target: 'detached' },
        { guard: 'execs', target: 'running' },
        { guard: 'shouldHold', target: 'holding' },
        { target: 'before-teardown' },
      ],
    },
    /** The tree runs the host's programs; ends when the root's program exits, or on STOP. */
    running: {
      always: { guard: 'rootExited', target: 'ending' },
      on: {
        WORKER_EXITED: { actions: 'recordHostExit' },
        WORKER_FAILED: {},
        HANDED_OFF: {},
        STOP: { target: 'ending', actions: 'recordStopRunning' },
        FAIL: { target: 'ending', actions: 'recordStopRunning' },
      },
    },
    /** Kills what is left of the exec'd tree and reaps what comes back to us. */
    ending: {
      on: { WORKER_EXITED: { actions: 'recordHostExit' }, WORKER_FAILED: {}, STOP: {}, FAIL: {} },
      invoke: {
        id: 'endExecTree',
        src: 'endExecTree',
        input: ({ context }) => ({ pidMap: context.pidMap }),
        onDone: 'done',
        onError: { target: 'failed', actions: 'recordTeardownError' },
      },
    },
    /** Every task exec'd and the tree is left running (-d): nothing of ours remains. */
    detached: { type: 'final' },
    /** Verified: the tree lives until the caller's STOP; losing a task fails the restore. */
    holding: {
      on: {
        STOP: 'before-teardown',
        WORKER_EXITED: { target: 'aborting', actions: 'recordLostInHold' },
        WORKER_FAILED: { target: 'aborting', actions: 'recordLostInHold' },
        FAIL: { target: 'aborting', actions: 'recordLostInHold' },
      },
    },
    /** Hook beforeTeardown: the verified tree is about to be taken down. */
    'before-teardown': hookState(
      'beforeTeardown',
      [{ target: 'tearing-down' }] as const,
      {
        STOP: {},
      } as const,
    ),
    'tearing-down': {
      entry: {
        type: 'broadcast',
        params: { message: { type: 'TEARDOWN', reason: 'restore finished' } },
      },
      on: { WORKER_EXITED: {}, WORKER_FAILED: {}, STOP: {}, FAIL: {} },
      invoke: {
        id: 'tearDownTree',
        src: 'tearDownTree',
        input: ({ context }) => ({ pidMap: context.pidMap }),
        onDone: 'done',
        onError: { target: 'failed', actions: 'recordTeardownError' },
      },
    },
    aborting: {
      entry: {
        type: 'broadcast',
        params: ({ context }) => ({
          message: { type: 'TEARDOWN', reason: context.failure?.message ?? 'aborted' },
        }),
      },
      on: { WORKER_EXITED: {}, WORKER_FAILED: {}, STOP: {}, FAIL: {} },
      invoke: {
        id: 'abortTree',
        src: 'abortTree',
        input: ({ context }) => ({
          pidMap: context.pidMap,
          reason: context.failure ?? abortReason(context, 'aborted'),
        }),
        onDone: 'failed',
        onError: 'failed',
      },
    },
    done: { type: 'final' },
    failed: { type: 'final' },
  },
  output: ({ context }) => ({
    ok: context.failure === undefined && context.differences.length === 0,
    pidMap: context.pidMap,
    differences: context.differences,
    ...(context.failure === undefined ? {} : { failure: context.failure }),
    ...(context.rootStatus === undefined ? {} : { rootStatus: context.rootStatus }),
    detached:
      context.handoff?.exec === true &&
      context.handoff.detach &&
      context.failure === undefined &&
      context.handedOff.length === context.plan.tasks.length,
  }),
});
