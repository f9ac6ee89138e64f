/**
 * The task machine: one per worker process. After its children are spawned it waits for
 * the coordinator's one GO (with the pid map), then runs its own steps in the seed's
 * order, waiting only on real dependencies: open-alive (and send what it opened);
 * become-creator (temp, open, send) then kill-temp, when it creates dead targets;
 * wait-for-fd, when it receives fds, then wait-for-temp-exit, when some of them are of
 * another creator's dead targets (that creator's notice that it reaped them); finalizing;
 * reporting (FD_REPORT) as soon as its own work is done. A step with nothing to do is
 * skipped. It is pure: every effect is a named actor (task-actors.ts) or the
 * `notifyCoordinator` action, both provided by the worker runtime with `provide()`.
 * States and transitions are documented in docs/machines.md.
 */
import { assign, enqueueActions, setup } from 'xstate';
import type { BroadcastPhase, OpenPhase, Phase, PhaseSteps, TaskPlan } from '../plan/types.js';
import type {
  Failure,
  FdReport,
  GoMessage,
  HandoffMessage,
  PidMap,
  TeardownMessage,
  WorkerMessage,
} from '../protocol/messages.js';
import { EMPTY_PID_MAP } from '../protocol/pidmap.js';
import { failureFromError } from './failure.js';
import { taskActorPlaceholders } from './task-actors.js';
import type { FileFd, FinishTempOutput, TempProcess } from './task-actors.js';

export interface TaskInput {
  plan: TaskPlan;
}

export interface TaskContext {
  plan: TaskPlan;
  /** The phase of the step being worked on, or of the last one finished. */
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

export type TaskEvent = GoMessage | TeardownMessage | HandoffMessage;

export interface TaskOutput {
  pid: number;
  failure?: Failure;
}

/** The steps of an open phase. */
export function stepsOf(plan: TaskPlan, phase: OpenPhase): PhaseSteps {
  return plan.steps[phase];
}

/** Every receive of the task (both open phases), with its phase. */
export function receivesOf(plan: TaskPlan) {
  return (['open-alive', 'dead'] as const).flatMap((phase) =>
    plan.steps[phase].receives.map((step) => ({ phase, step })),
  );
}

/** The creators whose dead targets this task receives: it waits for their notices. */
export function creatorsOf(plan: TaskPlan): number[] {
  return [...new Set(plan.steps.dead.receives.map((r) => r.from))];
}

/** The tasks this creator sent dead targets to: each gets its notice after kill-temp. */
export function deadPeersOf(plan: TaskPlan): number[] {
  return [...new Set(plan.steps.dead.sends.map((s) => s.to))];
}

/** The phase of wait-for-fd: dead when any fd of a dead target comes, else open-alive. */
export const receivePhase = (plan: TaskPlan): BroadcastPhase =>
  plan.steps.dead.receives.length > 0 ? 'dead' : 'open-alive';

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

const fail = (context: TaskContext, error: unknown) => failureFromError(error, context.phase);

/** Where a task goes once its open-alive work (opens, sends) is done. */
const AFTER_OPEN_ALIVE = [
  { guard: 'isCreator', target: 'become-creator' },
  { guard: 'expectsFds', target: 'wait-for-fd' },
  { target: 'finalizing' },
] as const;

/** Entering a step of `phase`: the coordinator hears of it when the phase changes. */
const enterStep = (phase: BroadcastPhase) => ({ type: 'enterStep', params: { phase } }) as const;

/** Records an actor's error as this task's failure and fails. */
const toFailed = (target: string) =>
  ({
    target,
    actions: {
      type: 'recordActorError',
      params: ({ event }: { event: { error: unknown } }) => ({ error: event.error }),
    },
  }) as const;

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
    /** GO: the pid map, and the first step (open-alive, which the coordinator assumes). */
    recordGo: assign((_, params: { pidMap: PidMap }) => ({
      phase: 'open-alive' as const,
      pidMap: params.pidMap,
    })),
    /** A step of `phase` starts: a STEP to the coordinator when the phase changes. */
    enterStep: enqueueActions(({ context, enqueue }, params: { phase: BroadcastPhase }) => {
      if (context.phase === params.phase) return;
      enqueue.assign({ phase: params.phase });
      // A named action of this machine (setup cannot type references to its own actions).
      const step: WorkerMessage = { type: 'STEP', pid: context.plan.pid, phase: params.phase };
      enqueue({ type: 'notifyCoordinator', params: step } as never);
    }),
    /** Adds the files and helper fds an openFiles/recvFds actor reports. */
    recordFiles: assign(({ context }, params: { files: FileFd[]; helperFds: number[] }) => ({
      files: [...context.files, ...params.files],
      helperFds: [...context.helperFds, ...params.helperFds],
    })),
    recordTemps: assign(({ context }, params: { temps: TempProcess[]; helperFds: number[] }) => ({
      temps: params.temps,
      helperFds: [...context.helperFds, ...params.helperFds],
    })),
    clearHelperFds: assign({ helperFds: [] }),
    recordReport: assign((_, params: { report: FdReport }) => ({ report: params.report })),
    /** An actor failed: keep its error as a Failure of the current phase. */
    recordActorError: assign(({ context }, params: { error: unknown }) => ({
      failure: context.failure ?? fail(context, params.error),
    })),
    recordWrongTempDeath: assign(({ context }, params: FinishTempOutput) => ({
      failure: {
        code: 'PCR_ERR_RESTORE' as const,
        phase: context.phase,
        message: wrongTempDeath(context.temps, params) ?? '',
      },
    })),
    recordSecondGo: assign(({ context }) => ({
      failure: context.failure ?? {
        code: 'PCR_ERR_INTERNAL' as const,
        phase: context.phase,
        message: `GO arrived during phase ${context.phase}: a task takes one GO, once registered`,
      },
    })),
    recordTeardown: assign((_, params: { reason: string }) => ({ teardownReason: params.reason })),
  },
  guards: {
    /** Does this task create temporary processes for dead groups? */
    isCreator: ({ context }) => context.plan.steps.dead.temps.length > 0,
    /** Does this task expect fds from other tasks? */
    expectsFds: ({ context }) => receivesOf(context.plan).length > 0,
    /** Does this task send fds in the current phase (open-alive or dead)? */
    hasSends: ({ context }) =>
      (context.phase === 'dead' ? context.plan.steps.dead : context.plan.steps['open-alive']).sends
        .length > 0,
    /** Were the sends just done those of the dead phase (then kill-temp)? */
    sentDead: ({ context }) => context.phase === 'dead' && context.plan.steps.dead.temps.length > 0,
    /** Does this task hold fds of another creator's dead targets? */
    awaitsTempExits: ({ context }) => creatorsOf(context.plan).length > 0,
    /** Did a temp die otherwise than planned (finishTemp's output)? */
    tempDiedWrong: ({ context }, params: FinishTempOutput) =>
      wrongTempDeath(context.temps, params) !== undefined,
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
    TEARDOWN: {
      target: '.tearing-down',
      actions: { type: 'recordTeardown', params: ({ event }) => ({ reason: event.reason }) },
    },
    GO: { target: '.failed', actions: 'recordSecondGo' },
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
        onError: toFailed('failed'),
      },
    },
    /** Registered: waits for the one GO. */
    ready: {
      on: {
        GO: {
          target: 'open-alive',
          actions: { type: 'recordGo', params: ({ event }) => ({ pidMap: event.pidMap }) },
        },
      },
    },
    /** Opens the alive, zombie, thread and external targets it opens (maybe none). */
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
          {
            guard: 'hasSends',
            target: 'sending',
            actions: { type: 'recordFiles', params: ({ event }) => event.output },
          },
          ...AFTER_OPEN_ALIVE.map((t) => ({
            ...t,
            actions: {
              type: 'recordFiles' as const,
              params: ({
                event,
              }: {
                event: { output: { files: FileFd[]; helperFds: number[] } };
              }) => event.output,
            },
          })),
        ],
        onError: toFailed('failed'),
      },
    },
    /** Temporary processes for its dead groups, then the pidfds to them. */
    'become-creator': {
      entry: enterStep('dead'),
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
            onDone: {
              target: 'opening',
              actions: { type: 'recordTemps', params: ({ event }) => event.output },
            },
            onError: toFailed('#task.failed'),
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
            onDone: {
              target: 'created',
              actions: { type: 'recordFiles', params: ({ event }) => event.output },
            },
            onError: toFailed('#task.failed'),
          },
        },
        created: { type: 'final' },
      },
      onDone: [{ guard: 'hasSends', target: 'sending' }, { target: 'kill-temp' }],
    },
    /** Sends what it opened in the current phase to every other holder. */
    sending: {
      invoke: {
        id: 'sendFds',
        src: 'sendFds',
        input: ({ context }) => {
          const phase: OpenPhase = context.phase === 'dead' ? 'dead' : 'open-alive';
          return {
            pid: context.plan.pid,
            phase,
            sends: stepsOf(context.plan, phase).sends,
            files: context.files,
            pidMap: context.pidMap,
          };
        },
        onDone: [{ guard: 'sentDead', target: 'kill-temp' }, ...AFTER_OPEN_ALIVE],
        onError: toFailed('failed'),
      },
    },
    /**
     * Its pidfds to the temps are sent: the temps, dead at once with their recorded
     * status (zombies until now), are reaped and checked; then every task it sent them
     * to gets its notice.
     */
    'kill-temp': {
      entry: enterStep('kill-temp'),
      invoke: {
        id: 'finishTemp',
        src: 'finishTemp',
        input: ({ context }) => ({
          pid: context.plan.pid,
          temps: context.temps,
          notify: deadPeersOf(context.plan),
          pidMap: context.pidMap,
        }),
        onDone: [
          {
            guard: { type: 'tempDiedWrong', params: ({ event }) => event.output },
            target: 'failed',
            actions: { type: 'recordWrongTempDeath', params: ({ event }) => event.output },
          },
          { guard: 'expectsFds', target: 'wait-for-fd' },
          { target: 'finalizing' },
        ],
        onError: toFailed('failed'),
      },
    },
    /** Waits for the fds other tasks open and send it (both phases). */
    'wait-for-fd': {
      entry: {
        type: 'enterStep',
        params: ({ context }) => ({ phase: receivePhase(context.plan) }),
      },
      invoke: {
        id: 'recvFds',
        src: 'recvFds',
        input: ({ context }) => ({
          pid: context.plan.pid,
          receives: receivesOf(context.plan),
          pidMap: context.pidMap,
        }),
        onDone: [
          {
            guard: 'awaitsTempExits',
            target: 'wait-for-temp-exit',
            actions: { type: 'recordFiles', params: ({ event }) => event.output },
          },
          {
            target: 'finalizing',
            actions: { type: 'recordFiles', params: ({ event }) => event.output },
          },
        ],
        onError: toFailed('failed'),
      },
    },
    /**
     * It holds pidfds of other creators' temps: waits for each creator's notice that its
     * temps died and were reaped, so that its report reads them as verification expects
     * (fdinfo Pid: -1, the exit status from PIDFD_GET_INFO).
     */
    'wait-for-temp-exit': {
      entry: enterStep('kill-temp'),
      invoke: {
        id: 'awaitTempExits',
        src: 'awaitTempExits',
        input: ({ context }) => ({
          pid: context.plan.pid,
          creators: creatorsOf(context.plan),
          pidMap: context.pidMap,
        }),
        onDone: 'finalizing',
        onError: toFailed('failed'),
      },
    },
    finalizing: {
      entry: enterStep('finalize'),
      invoke: {
        id: 'finalizeFds',
        src: 'finalizeFds',
        input: ({ context }) => ({
          pid: context.plan.pid,
          fds: context.plan.fds,
          drop: context.helperFds,
        }),
        onDone: { target: 'reporting', actions: 'clearHelperFds' },
        onError: toFailed('failed'),
      },
    },
    /** Its own work is done: reports its fd table at once. */
    reporting: {
      entry: enterStep('verify'),
      invoke: {
        id: 'reportFds',
        src: 'reportFds',
        input: ({ context }) => ({ pid: context.plan.pid, pidMap: context.pidMap }),
        onDone: {
          target: 'holding',
          actions: [
            { type: 'recordReport', params: ({ event }) => ({ report: event.output }) },
            {
              type: 'notifyCoordinator',
              params: ({ event }) => ({ type: 'FD_REPORT', report: event.output }),
            },
          ],
        },
        onError: toFailed('failed'),
      },
    },
    /** Restored and reported: holds every fd until TEARDOWN (or hands them off). */
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
        onError: toFailed('failed'),
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
      on: { GO: {} },
    },
    'tearing-down': {
      on: { TEARDOWN: {}, GO: {} },
      invoke: {
        id: 'tearDown',
        src: 'tearDown',
        input: ({ context }) => ({
          pid: context.plan.pid,
          reason: context.teardownReason ?? 'teardown',
        }),
        onDone: 'done',
        onError: toFailed('done'),
      },
    },
    done: { type: 'final' },
  },
  output: ({ context }) => ({ pid: context.plan.pid, failure: context.failure }),
});
