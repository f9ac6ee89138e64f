/**
 * The coordinator machine: registers every worker, then runs the phases across all of
 * them, collects the fd reports and compares them with the image. Pure: the ZeroMQ
 * socket, process spawning and killing are named actors/actions the coordinator runtime
 * provides (`coordinatorMachine.provide`). See docs/machines.md.
 */
import { assign, fromPromise, setup } from 'xstate';
import type { Image } from '../image/model.js';
import type { PcrErrorCode } from '../errors.js';
import { PcrError } from '../errors.js';
import type {
  ChildrenSpawned,
  CoordinatorMessage,
  FdReport,
  FdReportMessage,
  PhaseDone,
  PidMap,
  PidPair,
  WorkerFailed,
  WorkerHello,
} from '../plan/messages.js';
import { EMPTY_PID_MAP, withPairs } from '../plan/pidmap.js';
import type { BroadcastPhase, Phase, RestorePlan, WorkerChild } from '../plan/types.js';
import { compareReports } from '../plan/verify.js';
import type { Difference } from '../plan/verify.js';
import { describeFailure } from './failure.js';
import { describeWaitStatus } from '../plan/status.js';

export interface CoordinatorInput {
  image: Image;
  plan: RestorePlan;
  /** Longest wait for registration and for each phase. */
  phaseTimeoutMs: number;
  /** Keep the restored tree until STOP instead of tearing it down after verification. */
  hold: boolean;
}

/** Why a restore was aborted: names the task (when one is at fault), the phase, the cause. */
export interface AbortReason {
  code: PcrErrorCode;
  phase: Phase;
  pid?: number;
  message: string;
}

export interface CoordinatorContext {
  image: Image;
  plan: RestorePlan;
  phaseTimeoutMs: number;
  hold: boolean;
  phase: Phase;
  /** Restored pids as the workers say them (WORKER_HELLO). */
  hello: PidPair[];
  /** Workers that reported CHILDREN_SPAWNED. */
  spawned: number[];
  /** Restored pids as their parents (or spawnRoot) report them, and planned threads. */
  pidMap: PidMap;
  /** Workers done with the current phase. */
  done: number[];
  reports: FdReport[];
  differences: Difference[];
  failure?: AbortReason;
}

export interface WorkerExited {
  type: 'WORKER_EXITED';
  /** Dumped pid of the worker. */
  pid: number;
  /** Wait status word. */
  status: number;
}

export interface StopEvent {
  type: 'STOP';
  reason: string;
}

export type CoordinatorEvent =
  | WorkerHello
  | ChildrenSpawned
  | PhaseDone
  | WorkerFailed
  | FdReportMessage
  | WorkerExited
  | StopEvent;

export interface CoordinatorOutput {
  /** Restored, and no difference found. */
  ok: boolean;
  pidMap: PidMap;
  differences: Difference[];
  failure?: AbortReason;
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

function notProvided(name: string): () => Promise<never> {
  return () => Promise.reject(new PcrError('PCR_ERR_INTERNAL', `actor ${name} was not provided`));
}

export const coordinatorActorPlaceholders = {
  spawnRoot: fromPromise<SpawnRootOutput, SpawnRootInput>(notProvided('spawnRoot')),
  abortTree: fromPromise<void, AbortTreeInput>(notProvided('abortTree')),
  tearDownTree: fromPromise<void, TearDownTreeInput>(notProvided('tearDownTree')),
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
    const reported = context.pidMap.pids.find((p) => p.dumped === h.dumped);
    if (reported !== undefined && reported.restored !== h.restored) {
      return `task ${h.dumped} registered as pid ${h.restored} but was spawned as pid ${reported.restored}`;
    }
  }
  return undefined;
}

/** Tasks (dumped pids) and threads (dumped tids) not registered yet. */
export function missingRegistrations(context: CoordinatorContext): string[] {
  const has = (pairs: PidPair[], id: number) => pairs.some((p) => p.dumped === id);
  const missing: string[] = [];
  for (const t of context.plan.tasks) {
    if (!has(context.hello, t.pid)) missing.push(`task ${t.pid} (no hello)`);
    else if (!context.spawned.includes(t.pid)) missing.push(`task ${t.pid} (children not spawned)`);
  }
  for (const pid of allTaskPids(context.plan)) {
    if (!has(context.pidMap.pids, pid)) missing.push(`task ${pid} (no restored pid)`);
  }
  for (const tid of context.plan.tasks.flatMap((t) => t.threads)) {
    if (!has(context.pidMap.tids, tid)) missing.push(`thread ${tid}`);
  }
  return missing;
}

/** Workers not done with the current phase, as "task N". */
export function pendingTasks(context: CoordinatorContext): string[] {
  return workerPids(context.plan)
    .filter((p) => !context.done.includes(p))
    .map((p) => `task ${p}`);
}

/** Broadcasts PHASE for the current phase (set by enterPhase just before) with the pid map. */
const broadcastPhase = {
  type: 'broadcast',
  params: ({ context }: { context: CoordinatorContext }) => ({
    message: {
      type: 'PHASE',
      phase: context.phase as BroadcastPhase,
      pidMap: context.pidMap,
    } satisfies CoordinatorMessage,
  }),
} as const;

function abortReason(
  context: CoordinatorContext,
  message: string,
  code: PcrErrorCode = 'PCR_ERR_RESTORE',
  pid?: number,
): AbortReason {
  return { code, phase: context.phase, message, ...(pid === undefined ? {} : { pid }) };
}

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
    /** Announces the verification result (before holding). Runtime-provided. */
    reportResult: (_, _params: { pidMap: PidMap; differences: Difference[] }) => {},
    enterPhase: assign((_, params: { phase: BroadcastPhase }) => ({
      phase: params.phase,
      done: [],
    })),
    phaseTimedOut: assign({
      failure: ({ context }) =>
        abortReason(
          context,
          `phase ${context.phase} timed out after ${context.phaseTimeoutMs} ms waiting for ${pendingTasks(context).join(', ')}`,
          'PCR_ERR_TIMEOUT',
        ),
    }),
  },
  guards: {
    allRegistered: ({ context }) => missingRegistrations(context).length === 0,
    registrationWrong: ({ context }) => registrationProblem(context) !== undefined,
    isCurrentPhase: ({ context, event }) =>
      event.type === 'PHASE_DONE' && event.phase === context.phase,
    allTasksDone: ({ context }) => workerPids(context.plan).every((p) => context.done.includes(p)),
    shouldHold: ({ context }) => context.hold,
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
    phase: 'spawn',
    hello: [],
    spawned: [],
    pidMap: EMPTY_PID_MAP,
    done: [],
    reports: [],
    differences: [],
  }),
  initial: 'registering',
  on: {
    WORKER_FAILED: {
      target: '.aborting',
      actions: assign({
        failure: ({ event }) => ({
          code: event.failure.code,
          phase: event.failure.phase,
          pid: event.pid,
          message: describeFailure(event.pid, event.failure),
        }),
      }),
    },
    WORKER_EXITED: {
      target: '.aborting',
      actions: assign({
        failure: ({ context, event }) =>
          abortReason(
            context,
            `task ${event.pid} exited (${describeWaitStatus(event.status)}) during phase ${context.phase}`,
            'PCR_ERR_TASK_EXITED',
            event.pid,
          ),
      }),
    },
    STOP: {
      target: '.aborting',
      actions: assign({
        failure: ({ context, event }) =>
          abortReason(context, `stopped during phase ${context.phase}: ${event.reason}`),
      }),
    },
    FD_REPORT: {
      actions: assign({
        reports: ({ context, event }) => [
          ...context.reports.filter((r) => r.pid !== event.report.pid),
          event.report,
        ],
      }),
    },
  },
  states: {
    registering: {
      invoke: {
        id: 'spawnRoot',
        src: 'spawnRoot',
        input: ({ context }) => {
          const root = context.plan.tasks[0];
          return { root: { pid: context.plan.rootPid, reservedFds: root?.reservedFds ?? [] } };
        },
        onDone: {
          actions: assign({
            pidMap: ({ context, event }) => ({
              ...context.pidMap,
              pids: withPairs(context.pidMap.pids, [
                { dumped: context.plan.rootPid, restored: event.output.restoredPid },
              ]),
            }),
          }),
        },
        onError: {
          target: 'aborting',
          actions: assign({
            failure: ({ context, event }) =>
              abortReason(
                context,
                `spawning the root task ${context.plan.rootPid} failed: ${String((event.error as Error)?.message ?? event.error)}`,
                'PCR_ERR_RESTORE',
                context.plan.rootPid,
              ),
          }),
        },
      },
      on: {
        WORKER_HELLO: {
          actions: [
            assign({
              hello: ({ context, event }) =>
                withPairs(context.hello, [{ dumped: event.pid, restored: event.restoredPid }]),
            }),
            {
              type: 'sendToWorker',
              params: ({ context, event }) => ({
                to: event.pid,
                message: {
                  type: 'ASSIGN',
                  plan: context.plan.tasks.find((t) => t.pid === event.pid)!,
                },
              }),
            },
          ],
        },
        CHILDREN_SPAWNED: {
          actions: assign({
            spawned: ({ context, event }) => [...context.spawned, event.pid],
            pidMap: ({ context, event }) => ({
              pids: withPairs(context.pidMap.pids, event.children),
              tids: withPairs(context.pidMap.tids, event.threads),
            }),
          }),
        },
      },
      always: [
        {
          guard: 'registrationWrong',
          target: 'aborting',
          actions: assign({
            failure: ({ context }) => abortReason(context, registrationProblem(context) ?? ''),
          }),
        },
        { guard: 'allRegistered', target: 'phases' },
      ],
      after: {
        phaseTimeout: {
          target: 'aborting',
          actions: assign({
            failure: ({ context }) =>
              abortReason(
                context,
                `timed out waiting for ${missingRegistrations(context).join(', ')}`,
                'PCR_ERR_TIMEOUT',
              ),
          }),
        },
      },
    },
    phases: {
      initial: 'open-alive',
      on: {
        PHASE_DONE: [
          {
            guard: 'isCurrentPhase',
            actions: assign({
              done: ({ context, event }) =>
                context.done.includes(event.pid) ? context.done : [...context.done, event.pid],
            }),
          },
          {
            target: 'aborting',
            actions: assign({
              failure: ({ context, event }) =>
                abortReason(
                  context,
                  `task ${event.pid} finished phase ${event.phase} during phase ${context.phase}`,
                  'PCR_ERR_INTERNAL',
                  event.pid,
                ),
            }),
          },
        ],
      },
      states: {
        'open-alive': {
          entry: [{ type: 'enterPhase', params: { phase: 'open-alive' } }, broadcastPhase],
          always: { guard: 'allTasksDone', target: 'dead' },
          after: { phaseTimeout: { target: '#coordinator.aborting', actions: 'phaseTimedOut' } },
        },
        dead: {
          entry: [{ type: 'enterPhase', params: { phase: 'dead' } }, broadcastPhase],
          always: { guard: 'allTasksDone', target: 'kill-temp' },
          after: { phaseTimeout: { target: '#coordinator.aborting', actions: 'phaseTimedOut' } },
        },
        'kill-temp': {
          entry: [{ type: 'enterPhase', params: { phase: 'kill-temp' } }, broadcastPhase],
          always: { guard: 'allTasksDone', target: 'finalize' },
          after: { phaseTimeout: { target: '#coordinator.aborting', actions: 'phaseTimedOut' } },
        },
        finalize: {
          entry: [{ type: 'enterPhase', params: { phase: 'finalize' } }, broadcastPhase],
          always: { guard: 'allTasksDone', target: 'verify' },
          after: { phaseTimeout: { target: '#coordinator.aborting', actions: 'phaseTimedOut' } },
        },
        verify: {
          entry: [{ type: 'enterPhase', params: { phase: 'verify' } }, broadcastPhase],
          always: { guard: 'allTasksDone', target: '#coordinator.comparing' },
          after: { phaseTimeout: { target: '#coordinator.aborting', actions: 'phaseTimedOut' } },
        },
      },
    },
    comparing: {
      entry: [
        assign({
          differences: ({ context }) =>
            compareReports(context.image, context.pidMap, context.reports, {
              externalDead: context.plan.externalDead,
            }),
        }),
        {
          type: 'reportResult',
          params: ({ context }) => ({ pidMap: context.pidMap, differences: context.differences }),
        },
      ],
      always: [{ guard: 'shouldHold', target: 'holding' }, { target: 'tearing-down' }],
    },
    holding: {
      on: { STOP: 'tearing-down' },
    },
    'tearing-down': {
      entry: {
        type: 'broadcast',
        params: { message: { type: 'TEARDOWN', reason: 'restore finished' } },
      },
      on: { WORKER_EXITED: {}, WORKER_FAILED: {}, STOP: {} },
      invoke: {
        id: 'tearDownTree',
        src: 'tearDownTree',
        input: ({ context }) => ({ pidMap: context.pidMap }),
        onDone: 'done',
        onError: {
          target: 'failed',
          actions: assign({
            failure: ({ context, event }) =>
              abortReason(
                context,
                `tearing down failed: ${String((event.error as Error)?.message ?? event.error)}`,
              ),
          }),
        },
      },
    },
    aborting: {
      entry: {
        type: 'broadcast',
        params: ({ context }) => ({
          message: { type: 'TEARDOWN', reason: context.failure?.message ?? 'aborted' },
        }),
      },
      on: { WORKER_EXITED: {}, WORKER_FAILED: {}, STOP: {}, PHASE_DONE: {}, FD_REPORT: {} },
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
  }),
});
