/**
 * The task machine: one per worker process, driven by the coordinator's PHASE and
 * TEARDOWN messages. It is pure: every effect is a named actor (task-actors.ts) or the
 * `notifyCoordinator` action, both provided by the worker runtime with `provide()`.
 * States and transitions are documented in docs/machines.md.
 */
import { assign, setup } from 'xstate';
import type { DoneActorEvent, ErrorActorEvent } from 'xstate';
import type { BroadcastPhase, OpenPhase, Phase, PhaseSteps, TaskPlan } from '../plan/types.js';
import { PHASES } from '../plan/types.js';
import type {
  Failure,
  FdReport,
  HandoffMessage,
  PhaseMessage,
  PidMap,
  TeardownMessage,
  WorkerMessage,
} from '../protocol/messages.js';
import { EMPTY_PID_MAP } from '../protocol/pidmap.js';
import { failureFromError } from './failure.js';
import { taskActorPlaceholders } from './task-actors.js';
import type {
  FileFd,
  FinishTempOutput,
  OpenFilesOutput,
  SpawnTempOutput,
  TempProcess,
} from './task-actors.js';

export interface TaskInput {
  plan: TaskPlan;
}

export interface TaskContext {
  plan: TaskPlan;
  /** The phase being worked on, or the last one finished. */
  phase: Phase;
  pidMap: PidMap;
  /** Files this task holds so far, opened or received. */
  files: FileFd[];
  temps: TempProcess[];
  helperFds: number[];
  failure?: Failure;
  report?: FdReport;
  teardownReason?: string;
}

export type TaskEvent = PhaseMessage | TeardownMessage | HandoffMessage;

export interface TaskOutput {
  pid: number;
  failure?: Failure;
}

const EMPTY_STEPS: PhaseSteps = { temps: [], opens: [], sends: [], receives: [] };

/** The steps of an open phase; other phases have none. */
export function stepsOf(plan: TaskPlan, phase: Phase): PhaseSteps {
  return phase === 'open-alive' || phase === 'dead' ? plan.steps[phase] : EMPTY_STEPS;
}

function eventPhase(context: TaskContext, event: TaskEvent | { type: string }): Phase {
  return event.type === 'PHASE' ? (event as PhaseMessage).phase : context.phase;
}

function openPhase(context: TaskContext): OpenPhase {
  return context.phase === 'dead' ? 'dead' : 'open-alive';
}

/** A temp that did not die with its planned status, or undefined. */
export function wrongTempDeath(
  temps: readonly TempProcess[],
  out: FinishTempOutput,
): string | undefined {
  for (const t of temps) {
    const r = out.reaped.find((x) => x.groupId === t.groupId);
    if (r === undefined) return `temp of dead group ${t.groupId} (ino ${t.ino}) was not reaped`;
    if (r.status !== t.exitStatus) {
      return `temp of dead group ${t.groupId} (ino ${t.ino}) died with status ${r.status}, expected ${t.exitStatus}`;
    }
  }
  return undefined;
}

function phaseDone(context: TaskContext): WorkerMessage {
  return { type: 'PHASE_DONE', pid: context.plan.pid, phase: context.phase as BroadcastPhase };
}

/** The PHASE_DONE notification of the current phase. */
const notifyPhaseDone = {
  type: 'notifyCoordinator',
  params: ({ context }: { context: TaskContext }) => phaseDone(context),
} as const;

/** The output of the actor whose done event this is. */
const outputOf = <T>(event: unknown): T => (event as DoneActorEvent<T>).output;
const errorOf = (event: unknown): unknown => (event as ErrorActorEvent).error;

/** The parameterized guard "is the PHASE event for `phase`?". */
const isPhase = (phase: BroadcastPhase) => ({ type: 'isPhase', params: { phase } }) as const;

/** PHASE_DONE of the PHASE event's phase (when there is nothing to do in it). */
const notifyPhaseDoneFromEvent = {
  type: 'notifyCoordinator',
  params: ({ context, event }: { context: TaskContext; event: TaskEvent }) => ({
    type: 'PHASE_DONE' as const,
    pid: context.plan.pid,
    phase: eventPhase(context, event) as BroadcastPhase,
  }),
} as const;

const fail = (context: TaskContext, error: unknown) => failureFromError(error, context.phase);

export const taskMachine = setup({
  types: {
    input: {} as TaskInput,
    context: {} as TaskContext,
    events: {} as TaskEvent,
    output: {} as TaskOutput,
  },
  actors: taskActorPlaceholders,
  actions: {
    /** Sends one message to the coordinator; the worker runtime provides it. */
    notifyCoordinator: (_, _message: WorkerMessage) => {},
    /** Records the phase and pid map of a PHASE event. */
    enterPhase: assign({
      phase: ({ context, event }) => eventPhase(context, event),
      pidMap: ({ context, event }) => (event.type === 'PHASE' ? event.pidMap : context.pidMap),
    }),
    /** Adds the files and helper fds an openFiles/recvFds actor reports. */
    recordFiles: assign(({ context, event }) => {
      const out = outputOf<OpenFilesOutput>(event);
      return {
        files: [...context.files, ...out.files],
        helperFds: [...context.helperFds, ...out.helperFds],
      };
    }),
    recordTemps: assign(({ context, event }) => {
      const out = outputOf<SpawnTempOutput>(event);
      return { temps: out.temps, helperFds: [...context.helperFds, ...out.helperFds] };
    }),
    clearHelperFds: assign({ helperFds: [] }),
    recordReport: assign({ report: ({ event }) => outputOf<FdReport>(event) }),
    /** An actor failed: keep its error as a Failure of the current phase. */
    recordActorError: assign({
      failure: ({ context, event }) => context.failure ?? fail(context, errorOf(event)),
    }),
    recordWrongTempDeath: assign({
      failure: ({ context, event }) => ({
        code: 'PCR_ERR_RESTORE',
        phase: context.phase,
        message: wrongTempDeath(context.temps, outputOf<FinishTempOutput>(event)) ?? '',
      }),
    }),
    recordOutOfOrderPhase: assign({
      failure: ({ context, event }) => ({
        code: 'PCR_ERR_INTERNAL',
        phase: context.phase,
        message: `PHASE ${eventPhase(context, event)} is out of order after phase ${context.phase}`,
      }),
    }),
    recordBusyPhase: assign({
      failure: ({ context, event }) => ({
        code: 'PCR_ERR_INTERNAL',
        phase: context.phase,
        message: `PHASE ${eventPhase(context, event)} arrived while phase ${context.phase} was not finished`,
      }),
    }),
    recordTeardown: assign({
      teardownReason: ({ event }) => (event.type === 'TEARDOWN' ? event.reason : 'teardown'),
    }),
  },
  guards: {
    /** Is the PHASE event not the phase right after the current one? */
    isOutOfOrder: ({ context, event }) =>
      event.type !== 'PHASE' || PHASES.indexOf(event.phase) !== PHASES.indexOf(context.phase) + 1,
    isPhase: ({ event }, params: { phase: BroadcastPhase }) =>
      event.type === 'PHASE' && event.phase === params.phase,
    /** Phase dead: does this task create temporary processes for dead groups? */
    isCreator: ({ context, event }) =>
      eventPhase(context, event) === 'dead' && context.plan.steps.dead.temps.length > 0,
    /** Does this task expect fds from other tasks in the (event's or current) phase? */
    expectsFds: ({ context, event }) =>
      stepsOf(context.plan, eventPhase(context, event)).receives.length > 0,
    /** Does this task send fds to other tasks in the current phase? */
    hasSends: ({ context }) => stepsOf(context.plan, context.phase).sends.length > 0,
    /** Phase kill-temp: does this task hold temporary processes to finish? */
    hasTemps: ({ context, event }) =>
      eventPhase(context, event) === 'kill-temp' && context.temps.length > 0,
    /** Did a temp die otherwise than planned (finishTemp's done event)? */
    tempDiedWrong: ({ context, event }) =>
      wrongTempDeath(context.temps, outputOf<FinishTempOutput>(event)) !== undefined,
  },
}).createMachine({
  id: 'task',
  context: ({ input }) => ({
    plan: input.plan,
    phase: 'spawn',
    pidMap: EMPTY_PID_MAP,
    files: [],
    temps: [],
    helperFds: [],
  }),
  initial: 'spawning',
  on: {
    TEARDOWN: { target: '.tearing-down', actions: 'recordTeardown' },
    PHASE: { target: '.failed', actions: 'recordBusyPhase' },
  },
  states: {
    spawning: {
      invoke: {
        id: 'spawnChildren',
        src: 'spawnChildren',
        input: ({ context }) => ({
          pid: context.plan.pid,
          workerChildren: context.plan.workerChildren,
          zombieChildren: context.plan.zombieChildren,
          threads: context.plan.threads,
        }),
        onDone: {
          target: 'ready',
          actions: {
            type: 'notifyCoordinator',
            params: ({ context, event }) => ({
              type: 'CHILDREN_SPAWNED',
              pid: context.plan.pid,
              children: event.output.children,
              threads: event.output.threads,
            }),
          },
        },
        onError: { target: 'failed', actions: 'recordActorError' },
      },
    },
    /** Between phases: waits for the next PHASE and goes where that phase starts. */
    ready: {
      on: {
        PHASE: [
          { guard: 'isOutOfOrder', target: 'failed', actions: 'recordOutOfOrderPhase' },
          { guard: isPhase('open-alive'), target: 'open-alive', actions: 'enterPhase' },
          { guard: isPhase('finalize'), target: 'finalizing', actions: 'enterPhase' },
          { guard: isPhase('verify'), target: 'reporting', actions: 'enterPhase' },
          { guard: 'isCreator', target: 'become-creator', actions: 'enterPhase' },
          { guard: 'expectsFds', target: 'wait-for-fd', actions: 'enterPhase' },
          { guard: 'hasTemps', target: 'kill-temp', actions: 'enterPhase' },
          // dead or kill-temp with nothing to do here: done at once.
          { actions: ['enterPhase', notifyPhaseDoneFromEvent] },
        ],
      },
    },
    'open-alive': {
      invoke: {
        id: 'openFiles',
        src: 'openFiles',
        input: ({ context }) => ({
          pid: context.plan.pid,
          phase: 'open-alive' as const,
          opens: context.plan.steps['open-alive'].opens,
          pidMap: context.pidMap,
          temps: [],
        }),
        onDone: [
          { guard: 'hasSends', target: 'sending', actions: 'recordFiles' },
          { guard: 'expectsFds', target: 'wait-for-fd', actions: 'recordFiles' },
          { target: 'ready', actions: ['recordFiles', notifyPhaseDone] },
        ],
        onError: { target: 'failed', actions: 'recordActorError' },
      },
    },
    'become-creator': {
      initial: 'spawning-temp',
      states: {
        'spawning-temp': {
          invoke: {
            id: 'spawnTemp',
            src: 'spawnTemp',
            input: ({ context }) => ({
              pid: context.plan.pid,
              temps: context.plan.steps.dead.temps,
            }),
            onDone: { target: 'opening', actions: 'recordTemps' },
            onError: { target: '#task.failed', actions: 'recordActorError' },
          },
        },
        opening: {
          invoke: {
            id: 'openTempFiles',
            src: 'openFiles',
            input: ({ context }) => ({
              pid: context.plan.pid,
              phase: 'dead' as const,
              opens: context.plan.steps.dead.opens,
              pidMap: context.pidMap,
              temps: context.temps,
            }),
            onDone: { target: 'created', actions: 'recordFiles' },
            onError: { target: '#task.failed', actions: 'recordActorError' },
          },
        },
        created: { type: 'final' },
      },
      onDone: [
        { guard: 'hasSends', target: 'sending' },
        { guard: 'expectsFds', target: 'wait-for-fd' },
        { target: 'ready', actions: notifyPhaseDone },
      ],
    },
    sending: {
      invoke: {
        id: 'sendFds',
        src: 'sendFds',
        input: ({ context }) => ({
          pid: context.plan.pid,
          phase: openPhase(context),
          sends: stepsOf(context.plan, context.phase).sends,
          files: context.files,
          pidMap: context.pidMap,
        }),
        onDone: [
          { guard: 'expectsFds', target: 'wait-for-fd' },
          { target: 'ready', actions: notifyPhaseDone },
        ],
        onError: { target: 'failed', actions: 'recordActorError' },
      },
    },
    'wait-for-fd': {
      invoke: {
        id: 'recvFds',
        src: 'recvFds',
        input: ({ context }) => ({
          pid: context.plan.pid,
          phase: openPhase(context),
          receives: stepsOf(context.plan, context.phase).receives,
          pidMap: context.pidMap,
        }),
        onDone: { target: 'ready', actions: ['recordFiles', notifyPhaseDone] },
        onError: { target: 'failed', actions: 'recordActorError' },
      },
    },
    'kill-temp': {
      invoke: {
        id: 'finishTemp',
        src: 'finishTemp',
        input: ({ context }) => ({ pid: context.plan.pid, temps: context.temps }),
        onDone: [
          { guard: 'tempDiedWrong', target: 'failed', actions: 'recordWrongTempDeath' },
          { target: 'ready', actions: notifyPhaseDone },
        ],
        onError: { target: 'failed', actions: 'recordActorError' },
      },
    },
    finalizing: {
      invoke: {
        id: 'finalizeFds',
        src: 'finalizeFds',
        input: ({ context }) => ({
          pid: context.plan.pid,
          fds: context.plan.fds,
          drop: context.helperFds,
        }),
        onDone: { target: 'ready', actions: ['clearHelperFds', notifyPhaseDone] },
        onError: { target: 'failed', actions: 'recordActorError' },
      },
    },
    reporting: {
      invoke: {
        id: 'reportFds',
        src: 'reportFds',
        input: ({ context }) => ({ pid: context.plan.pid, pidMap: context.pidMap }),
        onDone: {
          target: 'holding',
          actions: [
            'recordReport',
            {
              type: 'notifyCoordinator',
              params: ({ event }) => ({ type: 'FD_REPORT', report: event.output }),
            },
            notifyPhaseDone,
          ],
        },
        onError: { target: 'failed', actions: 'recordActorError' },
      },
    },
    /** Restored and verified: holds every fd until TEARDOWN (or hands them off). */
    holding: {
      on: { HANDOFF: 'handing-off' },
    },
    /**
     * Sends the pidfds to the host's socket and/or execs the host's program keeping them
     * (docs/restore.md "Hand-off"). An exec that works never comes back: the coordinator
     * sees it from outside. Without exec: HANDED_OFF, then holds until TEARDOWN.
     */
    'handing-off': {
      invoke: {
        id: 'handOff',
        src: 'handOff',
        input: ({ context, event }) => ({
          pid: context.plan.pid,
          fds: context.plan.fds,
          handoff: event as HandoffMessage,
        }),
        onDone: {
          target: 'holding',
          actions: {
            type: 'notifyCoordinator',
            params: ({ context }) => ({ type: 'HANDED_OFF', pid: context.plan.pid }),
          },
        },
        onError: { target: 'failed', actions: 'recordActorError' },
      },
    },
    /** Told the coordinator; waits for TEARDOWN. */
    failed: {
      entry: {
        type: 'notifyCoordinator',
        params: ({ context }) => ({
          type: 'WORKER_FAILED',
          pid: context.plan.pid,
          failure: context.failure ?? {
            code: 'PCR_ERR_INTERNAL',
            phase: context.phase,
            message: 'failed without a recorded failure',
          },
        }),
      },
      on: { PHASE: {} },
    },
    'tearing-down': {
      on: { TEARDOWN: {}, PHASE: {} },
      invoke: {
        id: 'tearDown',
        src: 'tearDown',
        input: ({ context }) => ({
          pid: context.plan.pid,
          reason: context.teardownReason ?? 'teardown',
        }),
        onDone: 'done',
        onError: { target: 'done', actions: 'recordActorError' },
      },
    },
    done: { type: 'final' },
  },
  output: ({ context }) => ({ pid: context.plan.pid, failure: context.failure }),
});
