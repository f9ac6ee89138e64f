import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createActor, fromPromise, initialTransition, transition, toPromise } from 'xstate';
import type { AnyEventObject } from 'xstate';
import { SyscallError } from '../../src/errors.js';
import { taskMachine } from '../../src/machines/task.js';
import type { TaskContext } from '../../src/machines/task.js';
import type { FdReport, WorkerMessage } from '../../src/protocol/messages.js';
import type {
  FinalizeFdsInput,
  FinalizeFdsOutput,
  OpenFilesInput,
  OpenFilesOutput,
  RecvFdsInput,
  RecvFdsOutput,
  ReportFdsInput,
  SendFdsInput,
  SendFdsOutput,
  SpawnChildrenInput,
  SpawnChildrenOutput,
  TearDownInput,
} from '../../src/machines/task-actors.js';
import { planRestore } from '../../src/plan/planner.js';
import type { TaskPlan } from '../../src/plan/types.js';
import { SAMPLE_PID_MAP, sampleImage } from '../fixtures/plan-images.js';

type Snapshot = ReturnType<typeof initialTransition<typeof taskMachine>>[0];
type Actions = ReturnType<typeof initialTransition<typeof taskMachine>>[1];

const plan = planRestore(sampleImage());
const planOf = (pid: number): TaskPlan => plan.tasks.find((t) => t.pid === pid)!;

/** Messages the step sent to the coordinator. */
function notified(actions: Actions): WorkerMessage[] {
  return actions
    .filter((a) => a.type === 'notifyCoordinator')
    .map((a) => a.params as WorkerMessage);
}

/** Actors the step started: [invoke id, input]. */
function started(actions: Actions): [string, unknown][] {
  return actions
    .filter((a) => a.type === 'xstate.spawnChild')
    .map((a) => {
      const p = a.params as unknown as { id: string; input: unknown };
      return [p.id, p.input];
    });
}

class Driver {
  snapshot: Snapshot;
  actions: Actions;
  constructor(pid: number) {
    [this.snapshot, this.actions] = initialTransition(taskMachine, { plan: planOf(pid) });
  }
  send(event: AnyEventObject): this {
    [this.snapshot, this.actions] = transition(taskMachine, this.snapshot, event as never);
    return this;
  }
  done(id: string, output: unknown): this {
    return this.send({ type: `xstate.done.actor.${id}`, output });
  }
  error(id: string, error: unknown): this {
    return this.send({ type: `xstate.error.actor.${id}`, error });
  }
  go(): this {
    return this.send({ type: 'GO', pidMap: SAMPLE_PID_MAP });
  }
  get value() {
    return this.snapshot.value;
  }
  get context(): TaskContext {
    return this.snapshot.context;
  }
}

const step = (pid: number, phase: string) => ({ type: 'STEP', pid, phase });

test('task 200 (opener and creator) runs its own steps after one GO', () => {
  const d = new Driver(200);
  assert.equal(d.value, 'spawning');
  assert.deepEqual(started(d.actions), [
    ['spawnChildren', { pid: 200, workerChildren: [], zombieChildren: [], threads: [201] }],
  ]);

  d.done('spawnChildren', { children: [], threads: [{ dumped: 201, restored: 5201 }] });
  assert.equal(d.value, 'ready');
  assert.deepEqual(notified(d.actions), [
    {
      type: 'CHILDREN_SPAWNED',
      pid: 200,
      children: [],
      threads: [{ dumped: 201, restored: 5201 }],
    },
  ]);

  d.go();
  assert.equal(d.value, 'open-alive');
  assert.deepEqual(notified(d.actions), [], 'open-alive is where GO puts every task: no STEP');
  const [[id, input]] = started(d.actions) as [[string, { opens: { fileId: number }[] }]];
  assert.equal(id, 'openFiles');
  assert.deepEqual(
    input.opens.map((o) => o.fileId),
    [1],
  );
  d.done('openFiles', { files: [{ fileId: 1, fd: 4 }], helperFds: [] });
  // Nothing to send in open-alive: straight on to its dead groups, no message in between.
  assert.deepEqual(d.value, { 'become-creator': 'spawning-temp' });
  assert.deepEqual(notified(d.actions), [step(200, 'dead')]);
  assert.deepEqual(started(d.actions), [
    [
      'spawnTemp',
      {
        pid: 200,
        temps: [{ groupId: 0, ino: '2000', exitStatus: 768, statusSource: 'recorded' }],
      },
    ],
  ]);
  const temp = { groupId: 0, ino: '2000', exitStatus: 768, statusSource: 'recorded', pid: 6000 };
  d.done('spawnTemp', { temps: [temp], helperFds: [20] });
  assert.deepEqual(d.value, { 'become-creator': 'opening' });
  const opening = started(d.actions)[0]!;
  assert.equal(opening[0], 'openTempFiles');
  assert.deepEqual((opening[1] as { temps: unknown[] }).temps, [temp]);
  d.done('openTempFiles', {
    files: [
      { fileId: 2, fd: 5 },
      { fileId: 3, fd: 21 },
    ],
    helperFds: [21],
  });
  assert.equal(d.value, 'sending');
  assert.deepEqual(started(d.actions), [
    [
      'sendFds',
      {
        pid: 200,
        phase: 'dead',
        sends: [{ to: 100, fileIds: [2, 3] }],
        files: [
          { fileId: 1, fd: 4 },
          { fileId: 2, fd: 5 },
          { fileId: 3, fd: 21 },
        ],
        pidMap: SAMPLE_PID_MAP,
      },
    ],
  ]);
  d.done('sendFds', { messages: 1 });
  // Sent: the temp dies at once, and task 100 (which got pidfds of it) gets a notice.
  assert.equal(d.value, 'kill-temp');
  assert.deepEqual(notified(d.actions), [step(200, 'kill-temp')]);
  assert.deepEqual(started(d.actions), [
    ['finishTemp', { pid: 200, temps: [temp], notify: [100], pidMap: SAMPLE_PID_MAP }],
  ]);
  d.done('finishTemp', { reaped: [{ groupId: 0, status: 768 }] });
  // It receives nothing: finalize and report without waiting for anyone.
  assert.equal(d.value, 'finalizing');
  assert.deepEqual(notified(d.actions), [step(200, 'finalize')]);
  assert.deepEqual(started(d.actions), [
    ['finalizeFds', { pid: 200, fds: planOf(200).fds, drop: [20, 21] }],
  ]);
  d.done('finalizeFds', { closed: [20, 21] });
  assert.deepEqual(d.context.helperFds, []);
  assert.equal(d.value, 'reporting');
  assert.deepEqual(notified(d.actions), [step(200, 'verify')]);
  const report = { pid: 200, restoredPid: 5200, fds: [] };
  d.done('reportFds', report);
  assert.equal(d.value, 'holding');
  assert.deepEqual(notified(d.actions), [{ type: 'FD_REPORT', report }]);
  assert.deepEqual(d.context.report, report);

  d.send({ type: 'TEARDOWN', reason: 'restore finished' });
  assert.equal(d.value, 'tearing-down');
  assert.deepEqual(started(d.actions), [['tearDown', { pid: 200, reason: 'restore finished' }]]);
  d.done('tearDown', undefined);
  assert.equal(d.value, 'done');
  assert.equal(d.snapshot.status, 'done');
  assert.deepEqual(d.snapshot.output, { pid: 200, failure: undefined });
});

test("task 100 receives both phases at once, then waits for its creator's notice", () => {
  const d = new Driver(100);
  d.done('spawnChildren', {
    children: [
      { dumped: 200, restored: 5200 },
      { dumped: 300, restored: 5300 },
      { dumped: 400, restored: 5400 },
    ],
    threads: [],
  });
  d.go().done('openFiles', { files: [{ fileId: 5, fd: 8 }], helperFds: [] });
  assert.equal(d.value, 'wait-for-fd');
  assert.deepEqual(notified(d.actions), [step(100, 'dead')]);
  assert.deepEqual(started(d.actions), [
    [
      'recvFds',
      {
        pid: 100,
        receives: [
          ...planOf(100).steps['open-alive'].receives.map((s) => ({
            phase: 'open-alive',
            step: s,
          })),
          ...planOf(100).steps.dead.receives.map((s) => ({ phase: 'dead', step: s })),
        ],
        pidMap: SAMPLE_PID_MAP,
      },
    ],
  ]);
  d.done('recvFds', {
    files: [
      { fileId: 0, fd: 3 },
      { fileId: 2, fd: 4 },
      { fileId: 3, fd: 6 },
    ],
    helperFds: [],
  });
  // It holds pidfds of 200's temp: its report waits until 200 says the temp is reaped.
  assert.equal(d.value, 'wait-for-temp-exit');
  assert.deepEqual(notified(d.actions), [step(100, 'kill-temp')]);
  assert.deepEqual(started(d.actions), [
    ['awaitTempExits', { pid: 100, creators: [200], pidMap: SAMPLE_PID_MAP }],
  ]);
  d.done('awaitTempExits', undefined);
  assert.equal(d.value, 'finalizing');
  assert.deepEqual(
    d.context.files.map((f) => f.fileId),
    [5, 0, 2, 3],
  );
});

test('a second GO fails the task and tells the coordinator', () => {
  const d = new Driver(300).done('spawnChildren', { children: [], threads: [] });
  d.go();
  assert.equal(d.value, 'open-alive');
  d.go();
  assert.equal(d.value, 'failed');
  const [msg] = notified(d.actions);
  assert.equal(msg?.type, 'WORKER_FAILED');
  assert.match(
    (msg as { failure: { message: string } }).failure.message,
    /GO arrived during phase open-alive/,
  );
});

test('GO before the children are spawned fails the task in phase spawn', () => {
  const d = new Driver(300).go();
  assert.equal(d.value, 'failed');
  assert.equal(d.context.failure?.phase, 'spawn');
});

test('an actor error fails the task with the syscall and errno, then TEARDOWN ends it', () => {
  const d = new Driver(300).done('spawnChildren', { children: [], threads: [] });
  d.go();
  d.error('openFiles', new SyscallError('pidfd_open', 3, 'ESRCH', 'pid 5400'));
  assert.equal(d.value, 'failed');
  assert.deepEqual(notified(d.actions), [
    {
      type: 'WORKER_FAILED',
      pid: 300,
      failure: {
        code: 'PCR_ERR_SYSCALL',
        message: 'pidfd_open (pid 5400) failed: ESRCH (3)',
        phase: 'open-alive',
        syscall: 'pidfd_open',
        errno: 3,
        errnoName: 'ESRCH',
      },
    },
  ]);
  d.go(); // ignored once failed
  assert.equal(d.value, 'failed');
  d.send({ type: 'TEARDOWN', reason: 'aborted' }).done('tearDown', undefined);
  assert.equal(d.snapshot.status, 'done');
  assert.equal(d.snapshot.output?.failure?.errnoName, 'ESRCH');
});

test('a spawn failure fails the task in phase spawn', () => {
  const d = new Driver(100).error('spawnChildren', new Error('posix_spawn: EAGAIN'));
  assert.equal(d.value, 'failed');
  assert.deepEqual(d.context.failure, {
    code: 'PCR_ERR_INTERNAL',
    message: 'posix_spawn: EAGAIN',
    phase: 'spawn',
  });
});

test('a temp that died otherwise than planned fails kill-temp', () => {
  const d = new Driver(200).done('spawnChildren', { children: [], threads: [] });
  d.go().done('openFiles', { files: [], helperFds: [] });
  const temp = { groupId: 0, ino: '2000', exitStatus: 768, statusSource: 'recorded', pid: 6000 };
  d.done('spawnTemp', { temps: [temp], helperFds: [] });
  d.done('openTempFiles', { files: [], helperFds: [] }).done('sendFds', { messages: 1 });
  assert.equal(d.value, 'kill-temp');
  d.done('finishTemp', { reaped: [{ groupId: 0, status: 9 }] });
  assert.equal(d.value, 'failed');
  assert.equal(d.context.failure?.code, 'PCR_ERR_RESTORE');
  assert.match(
    d.context.failure!.message,
    /temp of dead group 0 \(ino 2000\) died with status 9, expected 768/,
  );
});

test('TEARDOWN in the middle of a step tears down', () => {
  const d = new Driver(200).done('spawnChildren', { children: [], threads: [] });
  d.go();
  d.send({ type: 'TEARDOWN', reason: 'task 300 failed' });
  assert.equal(d.value, 'tearing-down');
  assert.ok(d.actions.some((a) => (a.type as string) === 'xstate.stopChild'));
  d.send({ type: 'TEARDOWN', reason: 'again' }); // ignored
  assert.equal(d.value, 'tearing-down');
});

test('toJSON lists the named actors, guards and actions', () => {
  const json = JSON.stringify(taskMachine.toJSON());
  for (const name of [
    'spawnChildren',
    'openFiles',
    'spawnTemp',
    'sendFds',
    'recvFds',
    'finishTemp',
    'awaitTempExits',
    'finalizeFds',
    'reportFds',
    'tearDown',
    'isCreator',
    'expectsFds',
    'hasSends',
    'sentDead',
    'awaitsTempExits',
    'tempDiedWrong',
    'notifyCoordinator',
    'recordGo',
    'enterStep',
    'recordFiles',
    'recordTemps',
    'recordActorError',
    'recordWrongTempDeath',
  ]) {
    assert.ok(json.includes(`"${name}"`), `${name} appears in toJSON()`);
  }
  for (const state of [
    'open-alive',
    'become-creator',
    'wait-for-fd',
    'wait-for-temp-exit',
    'kill-temp',
    'holding',
  ]) {
    assert.ok(json.includes(`"${state}"`), `state ${state}`);
  }
});

test('runs with createActor and stub actors provided', async () => {
  const sent: WorkerMessage[] = [];
  const calls: string[] = [];
  const stub = <O, I>(name: string, output: O) =>
    fromPromise<O, I>(async () => {
      calls.push(name);
      return output;
    });
  const machine = taskMachine.provide({
    actions: { notifyCoordinator: (_, m) => void sent.push(m) },
    actors: {
      spawnChildren: stub<SpawnChildrenOutput, SpawnChildrenInput>('spawnChildren', {
        children: [],
        threads: [],
      }),
      openFiles: stub<OpenFilesOutput, OpenFilesInput>('openFiles', { files: [], helperFds: [] }),
      sendFds: stub<SendFdsOutput, SendFdsInput>('sendFds', { messages: 1 }),
      recvFds: stub<RecvFdsOutput, RecvFdsInput>('recvFds', { files: [], helperFds: [] }),
      finalizeFds: stub<FinalizeFdsOutput, FinalizeFdsInput>('finalizeFds', { closed: [] }),
      reportFds: stub<FdReport, ReportFdsInput>('reportFds', {
        pid: 300,
        restoredPid: 5300,
        fds: [],
      }),
      tearDown: stub<void, TearDownInput>('tearDown', undefined),
    },
  });
  const actor = createActor(machine, { input: { plan: planOf(300) } }).start();
  const waitFor = (value: string) =>
    new Promise<void>((resolve) => {
      const sub = actor.subscribe((s) => {
        if (s.matches(value as never)) {
          sub.unsubscribe();
          resolve();
        }
      });
      if (actor.getSnapshot().matches(value as never)) resolve();
    });
  await waitFor('ready');
  // 300 opens and sends in open-alive, then creates group 1 (ino 6000): spawnTemp was not
  // provided, the placeholder rejects, and the task must fail in phase dead, naming it.
  actor.send({ type: 'GO', pidMap: SAMPLE_PID_MAP });
  await waitFor('failed');
  const failed = sent.find((m) => m.type === 'WORKER_FAILED');
  assert.match(JSON.stringify(failed), /actor spawnTemp was not provided/);
  assert.match(JSON.stringify(failed), /"phase":"dead"/);
  actor.send({ type: 'TEARDOWN', reason: 'test' });
  const out = await toPromise(actor);
  assert.equal(out.pid, 300);
  assert.deepEqual(calls, ['spawnChildren', 'openFiles', 'sendFds', 'tearDown']);
  assert.deepEqual(
    sent.map((m) => m.type),
    ['CHILDREN_SPAWNED', 'STEP', 'WORKER_FAILED'],
  );
});

test('holding: HANDOFF starts handOff with the final fd table; done -> HANDED_OFF, error -> failed', () => {
  const handoff = {
    type: 'HANDOFF',
    socketPath: '/run/host.sock',
    batches: [],
    execArgv: ['/bin/prog'],
    execEnv: ['A=1'],
  };
  const atHolding = (): Driver => {
    const d = new Driver(300);
    d.snapshot = taskMachine.resolveState({
      value: 'holding',
      context: { ...d.context, phase: 'verify', pidMap: SAMPLE_PID_MAP },
    });
    return d;
  };
  const d = atHolding().send(handoff);
  assert.equal(d.value, 'handing-off');
  assert.deepEqual(started(d.actions), [['handOff', { pid: 300, fds: planOf(300).fds, handoff }]]);
  d.done('handOff', { batches: 1 });
  assert.equal(d.value, 'holding');
  assert.deepEqual(notified(d.actions), [{ type: 'HANDED_OFF', pid: 300 }]);

  const f = atHolding().send(handoff);
  f.error('handOff', new SyscallError('execve', 8, 'ENOEXEC', '/bin/prog'));
  assert.equal(f.value, 'failed');
  const [failed] = notified(f.actions) as [Extract<WorkerMessage, { type: 'WORKER_FAILED' }>];
  assert.equal(failed.type, 'WORKER_FAILED');
  assert.equal(failed.failure.errnoName, 'ENOEXEC');

  // A TEARDOWN during the hand-off tears down as anywhere.
  assert.equal(
    atHolding().send(handoff).send({ type: 'TEARDOWN', reason: 'x' }).value,
    'tearing-down',
  );
});
