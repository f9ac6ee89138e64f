import { test } from 'node:test';
import assert from 'node:assert/strict';
import { initialTransition, transition } from 'xstate';
import type { AnyEventObject } from 'xstate';
import { coordinatorMachine } from '../../src/machines/coordinator.js';
import type { CoordinatorInput } from '../../src/machines/coordinator.js';
import type { CoordinatorMessage } from '../../src/protocol/messages.js';
import { planRestore } from '../../src/plan/planner.js';
import { SAMPLE_PID_MAP, faithfulReportsFor, sampleImage } from '../fixtures/plan-images.js';

type Snapshot = ReturnType<typeof initialTransition<typeof coordinatorMachine>>[0];
type Actions = ReturnType<typeof initialTransition<typeof coordinatorMachine>>[1];

const image = sampleImage();
const plan = planRestore(image);
const WORKERS = [100, 200, 300];

class Driver {
  snapshot: Snapshot;
  actions: Actions;
  constructor(input: Partial<CoordinatorInput> = {}) {
    [this.snapshot, this.actions] = initialTransition(coordinatorMachine, {
      image,
      plan,
      phaseTimeoutMs: 5000,
      hold: false,
      ...input,
    });
  }
  send(event: AnyEventObject): this {
    [this.snapshot, this.actions] = transition(coordinatorMachine, this.snapshot, event as never);
    return this;
  }
  get value() {
    return this.snapshot.value;
  }
  /** Messages this step sent: [to or '*', message]. */
  get sent(): [number | '*', CoordinatorMessage][] {
    return this.actions.flatMap((a): [number | '*', CoordinatorMessage][] => {
      const p = a.params as { to?: number; message: CoordinatorMessage };
      if (a.type === 'sendToWorker') return [[p.to!, p.message]];
      if (a.type === 'broadcast') return [['*', p.message]];
      return [];
    });
  }
  /** The delayed event the phase timeout would deliver. */
  get timeoutEvent(): AnyEventObject {
    const raise = this.actions.find(
      (a) => (a.type as string) === 'xstate.raise' && (a.params as { delay?: number }).delay,
    );
    assert.ok(raise, 'a timeout is scheduled');
    return (raise.params as unknown as { event: AnyEventObject }).event;
  }
}

const restored = (pid: number) => SAMPLE_PID_MAP.pids.find((p) => p.dumped === pid)!.restored;

const HOOK_IDS = {
  treeBuilt: 'hookTreeBuilt',
  verified: 'hookVerified',
  beforeHandoff: 'hookBeforeHandoff',
  beforeTeardown: 'hookBeforeTeardown',
} as const;

/** The input the hook invoked by this step got (the machine is in the hook's state). */
function hookInput(d: Driver, hook: keyof typeof HOOK_IDS): Record<string, unknown> {
  const spawn = d.actions.find(
    (a) => a.type === 'xstate.spawnChild' && (a.params as { id?: string }).id === HOOK_IDS[hook],
  );
  assert.ok(spawn, `hook ${hook} is invoked`);
  return (spawn.params as unknown as { input: Record<string, unknown> }).input;
}

/** The hook the machine waits for resolves with `output`. */
function hookDone(d: Driver, hook: keyof typeof HOOK_IDS, output: object = {}): Driver {
  return d.send({ type: `xstate.done.actor.${HOOK_IDS[hook]}`, output });
}

/** Registers the sample tree and lets hook treeBuilt through: the first phase begins. */
function register(d: Driver): Driver {
  registerOnly(d);
  assert.equal(d.value, 'tree-built');
  return hookDone(d, 'treeBuilt');
}

/** Registers the sample tree: root spawned, three hellos, three CHILDREN_SPAWNED. */
function registerOnly(d: Driver): Driver {
  d.send({ type: 'xstate.done.actor.spawnRoot', output: { restoredPid: restored(100) } });
  d.send({ type: 'WORKER_HELLO', pid: 100, restoredPid: restored(100) });
  assert.deepEqual(d.sent, [[100, { type: 'ASSIGN', plan: plan.tasks[0] }]]);
  d.send({
    type: 'CHILDREN_SPAWNED',
    pid: 100,
    children: [200, 300, 400].map((p) => ({ dumped: p, restored: restored(p) })),
    threads: [],
  });
  d.send({ type: 'WORKER_HELLO', pid: 200, restoredPid: restored(200) });
  d.send({ type: 'WORKER_HELLO', pid: 300, restoredPid: restored(300) });
  d.send({ type: 'CHILDREN_SPAWNED', pid: 300, children: [], threads: [] });
  assert.equal(d.value, 'registering');
  d.send({
    type: 'CHILDREN_SPAWNED',
    pid: 200,
    children: [],
    threads: [{ dumped: 201, restored: 5201 }],
  });
  return d;
}

/** Every task's report comes in (held by the runtime until the last, as report-gate.ts). */
function reportAll(d: Driver, reports = faithfulReportsFor(image, SAMPLE_PID_MAP)): Driver {
  for (const report of reports) d.send({ type: 'FD_REPORT', report });
  return d;
}

const GO = { type: 'GO', pidMap: SAMPLE_PID_MAP };

test('happy path: registration, one GO, the reports, comparison, teardown', () => {
  const d = new Driver();
  assert.equal(d.value, 'registering');
  register(d);
  assert.equal(d.value, 'phases');
  assert.deepEqual(d.snapshot.context.pidMap, SAMPLE_PID_MAP);
  assert.deepEqual(d.sent, [['*', GO]], 'one GO, the only message of the phases');
  assert.deepEqual(d.snapshot.context.at, {
    100: 'open-alive',
    200: 'open-alive',
    300: 'open-alive',
  });

  // Each task goes its own way; STEPs only say where it is, nothing is sent back.
  d.send({ type: 'STEP', pid: 200, phase: 'dead' });
  d.send({ type: 'STEP', pid: 200, phase: 'kill-temp' });
  d.send({ type: 'STEP', pid: 100, phase: 'dead' });
  d.send({ type: 'STEP', pid: 300, phase: 'finalize' });
  assert.deepEqual(d.sent, []);
  assert.equal(d.snapshot.context.phase, 'dead');
  const [r100, r200, r300] = faithfulReportsFor(image, SAMPLE_PID_MAP);
  d.send({ type: 'FD_REPORT', report: r200! });
  d.send({ type: 'FD_REPORT', report: r100! });
  d.send({ type: 'FD_REPORT', report: r100! }); // a duplicate counts once
  assert.equal(d.value, 'phases', 'still in phases until 300 reported');
  assert.equal(d.snapshot.context.phase, 'finalize');
  d.send({ type: 'FD_REPORT', report: r300! });
  assert.equal(d.value, 'verified');
  const types = d.actions.map((a) => a.type as string);
  assert.ok(types.includes('reportResult'));
  assert.deepEqual(d.actions.find((a) => a.type === 'reportResult')!.params, {
    pidMap: SAMPLE_PID_MAP,
    differences: [],
  });
  assert.deepEqual(hookInput(d, 'verified'), {
    hook: 'verified',
    pidMap: SAMPLE_PID_MAP,
    differences: [],
  });
  hookDone(d, 'verified');
  assert.equal(d.value, 'before-handoff');
  hookDone(d, 'beforeHandoff');
  assert.equal(d.value, 'before-teardown', 'without hold: straight to the teardown hook');
  assert.deepEqual(d.sent, [], 'nothing torn down before the hook resolves');
  hookDone(d, 'beforeTeardown');
  assert.equal(d.value, 'tearing-down');
  assert.deepEqual(d.sent, [['*', { type: 'TEARDOWN', reason: 'restore finished' }]]);
  d.send({ type: 'WORKER_EXITED', pid: 200, status: 0 }); // expected now
  assert.equal(d.value, 'tearing-down');
  d.send({ type: 'xstate.done.actor.tearDownTree', output: undefined });
  assert.equal(d.snapshot.status, 'done');
  assert.deepEqual(d.snapshot.output, {
    ok: true,
    pidMap: SAMPLE_PID_MAP,
    differences: [],
    detached: false,
  });
});

/**
 * Registration and every phase with faithful reports: the machine compares, then hooks
 * verified and beforeHandoff let it through (the hand-off comes after them).
 */
function verify(d: Driver): Driver {
  reportAll(register(d));
  assert.equal(d.value, 'verified');
  return hookDone(hookDone(d, 'verified'), 'beforeHandoff');
}

const handoff = (exec: boolean, detach = false, socket = !exec) => ({
  handoff: { exec, detach, socket },
});

test('hand-off to a socket: HANDOFF for all once verified, then teardown (or hold)', () => {
  const d = verify(new Driver(handoff(false)));
  assert.equal(d.value, 'handing-off');
  const start = d.actions.find((a) => a.type === 'startHandoff');
  assert.ok(start, 'startHandoff runs on entry');
  assert.deepEqual((start.params as { pidMap: unknown }).pidMap, SAMPLE_PID_MAP);
  d.send({ type: 'HANDED_OFF', pid: 100 });
  d.send({ type: 'HANDED_OFF', pid: 100 }); // counted once
  d.send({ type: 'HANDED_OFF', pid: 200 });
  assert.equal(d.value, 'handing-off');
  d.send({ type: 'HANDED_OFF', pid: 300 });
  assert.equal(d.value, 'before-teardown', 'handed off: the teardown hook, then teardown');
  hookDone(d, 'beforeTeardown');
  assert.equal(d.value, 'tearing-down');

  const held = verify(new Driver({ ...handoff(false), hold: true }));
  for (const pid of WORKERS) held.send({ type: 'HANDED_OFF', pid });
  assert.equal(held.value, 'holding');
});

test('a STOP during a socket hand-off that ends in a hold lets it finish, then tears down; without hold it aborts', () => {
  const held = verify(new Driver({ ...handoff(false), hold: true }));
  held.send({ type: 'HANDED_OFF', pid: 100 });
  held.send({ type: 'STOP', reason: 'SIGTERM' }); // the host has what it came for
  assert.equal(held.value, 'handing-off', 'the other tasks still hand off');
  held.send({ type: 'HANDED_OFF', pid: 200 });
  held.send({ type: 'HANDED_OFF', pid: 300 });
  assert.equal(held.value, 'before-teardown', 'no hold: the STOP ends it at once');
  hookDone(held, 'beforeTeardown');
  held.send({ type: 'xstate.done.actor.tearDownTree', output: undefined });
  assert.equal(held.snapshot.output?.ok, true);
  assert.equal(held.snapshot.output?.failure, undefined);

  const lost = verify(new Driver({ ...handoff(false), hold: true }));
  lost.send({ type: 'STOP', reason: 'SIGTERM' });
  lost.send({ type: 'WORKER_EXITED', pid: 100, status: 9 }); // still a loss
  assert.equal(lost.value, 'aborting');
  assert.equal(lost.snapshot.context.failure?.code, 'PCR_ERR_TASK_EXITED');

  const d = verify(new Driver(handoff(false)));
  d.send({ type: 'STOP', reason: 'SIGTERM' });
  assert.equal(d.value, 'aborting');
  assert.match(d.snapshot.context.failure!.message, /SIGTERM/);
});

test('a worker lost during a socket hand-off aborts, naming it; so does the timeout', () => {
  const d = verify(new Driver(handoff(false)));
  d.send({ type: 'HANDED_OFF', pid: 100 });
  d.send({ type: 'WORKER_EXITED', pid: 100, status: 9 }); // not exec'd: a loss
  assert.equal(d.value, 'aborting');
  assert.equal(d.snapshot.context.failure?.code, 'PCR_ERR_TASK_EXITED');

  const t = verify(new Driver(handoff(false)));
  const timeout = t.timeoutEvent; // scheduled on entering handing-off
  t.send({ type: 'HANDED_OFF', pid: 200 });
  t.send(timeout);
  assert.equal(t.value, 'aborting');
  assert.match(t.snapshot.context.failure!.message, /hand-off timed out .* task 100, task 300$/);
});

test('a verification difference means no hand-off: teardown, not ok', () => {
  const d = new Driver(handoff(true, true));
  const reports = faithfulReportsFor(image, SAMPLE_PID_MAP);
  reports[0] = { ...reports[0]!, fds: reports[0]!.fds.slice(1) };
  reportAll(register(d), reports);
  hookDone(hookDone(d, 'verified'), 'beforeHandoff');
  assert.equal(d.value, 'before-teardown');
  assert.ok(!d.actions.some((a) => a.type === 'startHandoff'));
});

test('exec with detach: done once every task exec’d; an exec’d program may exit already', () => {
  const d = verify(new Driver(handoff(true, true)));
  assert.equal(d.value, 'handing-off');
  d.send({ type: 'HANDED_OFF', pid: 300 });
  d.send({ type: 'WORKER_EXITED', pid: 300, status: 0 }); // its program ended: no loss
  assert.equal(d.value, 'handing-off');
  d.send({ type: 'HANDED_OFF', pid: 100 });
  d.send({ type: 'HANDED_OFF', pid: 200 });
  assert.equal(d.value, 'detached');
  assert.equal(d.snapshot.status, 'done');
  assert.equal(d.snapshot.output?.detached, true);
  assert.equal(d.snapshot.output?.ok, true);
});

test('exec without detach: runs until the root program exits, then ends the tree', () => {
  const d = verify(new Driver(handoff(true)));
  for (const pid of WORKERS) d.send({ type: 'HANDED_OFF', pid });
  assert.equal(d.value, 'running');
  d.send({ type: 'WORKER_EXITED', pid: 200, status: 0 }); // not the root
  assert.equal(d.value, 'running');
  d.send({ type: 'WORKER_EXITED', pid: 100, status: 3 << 8 });
  assert.equal(d.value, 'ending');
  d.send({ type: 'xstate.done.actor.endExecTree', output: undefined });
  assert.equal(d.snapshot.status, 'done');
  assert.equal(d.snapshot.output?.rootStatus, 3 << 8);
  assert.equal(d.snapshot.output?.failure, undefined);
  assert.equal(d.snapshot.output?.detached, false);

  // STOP takes the programs down and says so.
  const s = verify(new Driver(handoff(true)));
  for (const pid of WORKERS) s.send({ type: 'HANDED_OFF', pid });
  s.send({ type: 'STOP', reason: 'interrupted by SIGTERM' });
  assert.equal(s.value, 'ending');
  assert.equal(s.snapshot.context.failure?.execd, true);
  assert.equal(s.snapshot.context.failure!.message, 'interrupted by SIGTERM');
});

test('an exec that fails (WORKER_FAILED) aborts with the worker’s failure', () => {
  const d = verify(new Driver(handoff(true, true)));
  d.send({ type: 'HANDED_OFF', pid: 100 });
  d.send({
    type: 'WORKER_FAILED',
    pid: 200,
    failure: { code: 'PCR_ERR_EXEC', phase: 'verify', message: 'execve /x: ENOEXEC (8)' },
  });
  assert.equal(d.value, 'aborting');
  assert.equal(d.snapshot.context.failure?.code, 'PCR_ERR_EXEC');
  assert.equal(d.snapshot.context.failure?.pid, 200);
});

test('spawnRoot is invoked with the root and its reserved fds', () => {
  const d = new Driver();
  const spawn = d.actions.find((a) => a.type === 'xstate.spawnChild')!.params as unknown as {
    id: string;
    input: unknown;
  };
  assert.equal(spawn.id, 'spawnRoot');
  assert.deepEqual(spawn.input, { root: { pid: 100, reservedFds: [3, 4, 6, 7, 8] } });
});

test('with hold it holds after verification until STOP; differences make ok false', () => {
  const d = register(new Driver({ hold: true }));
  const reports = faithfulReportsFor(image, SAMPLE_PID_MAP);
  reports[0]!.fds[0]!.cloexec = !reports[0]!.fds[0]!.cloexec;
  reportAll(d, reports);
  hookDone(hookDone(d, 'verified'), 'beforeHandoff');
  assert.equal(d.value, 'holding');
  assert.deepEqual(
    d.snapshot.context.differences.map((x) => x.message),
    ['task 100 fd 3: close-on-exec is clear, expected set'],
  );
  d.send({ type: 'STOP', reason: 'SIGTERM' });
  assert.equal(d.value, 'before-teardown');
  assert.equal(
    (hookInput(d, 'beforeTeardown').differences as unknown[]).length,
    1,
    'the teardown hook is told the differences',
  );
  hookDone(d, 'beforeTeardown');
  assert.equal(d.value, 'tearing-down');
  d.send({ type: 'xstate.done.actor.tearDownTree', output: undefined });
  assert.equal(d.snapshot.output?.ok, false);
  assert.equal(d.snapshot.output?.failure, undefined);
});

test('a worker failure aborts, naming task, phase and cause', () => {
  const d = register(new Driver());
  d.send({ type: 'STEP', pid: 200, phase: 'dead' });
  d.send({
    type: 'WORKER_FAILED',
    pid: 200,
    failure: {
      code: 'PCR_ERR_SYSCALL',
      phase: 'dead',
      message: 'pidfd_open (pid 6000) failed: ESRCH (3)',
    },
  });
  assert.equal(d.value, 'aborting');
  assert.deepEqual(d.sent, [
    [
      '*',
      {
        type: 'TEARDOWN',
        reason: 'task 200 failed in phase dead: pidfd_open (pid 6000) failed: ESRCH (3)',
      },
    ],
  ]);
  d.send({ type: 'xstate.done.actor.abortTree', output: undefined });
  assert.equal(d.value, 'failed');
  assert.deepEqual(d.snapshot.output?.failure, {
    code: 'PCR_ERR_SYSCALL',
    phase: 'dead',
    pid: 200,
    message: 'task 200 failed in phase dead: pidfd_open (pid 6000) failed: ESRCH (3)',
  });
  assert.equal(d.snapshot.output?.ok, false);
});

test('a worker that exits mid-restore aborts with its status', () => {
  const d = register(new Driver());
  d.send({ type: 'WORKER_EXITED', pid: 300, status: 9 });
  assert.equal(d.value, 'aborting');
  assert.equal(d.snapshot.context.failure?.code, 'PCR_ERR_TASK_EXITED');
  assert.equal(
    d.snapshot.context.failure?.message,
    'task 300 exited (killed by signal 9) during phase open-alive',
  );
  d.send({ type: 'xstate.error.actor.abortTree', error: new Error('kill failed') });
  assert.equal(d.value, 'failed');
});

test('the reports timeout aborts, naming the tasks whose report is not in and where they are', () => {
  const d = register(new Driver());
  const timeout = d.timeoutEvent; // scheduled on entering phases
  d.send({ type: 'REPORT_HELD', pid: 100 });
  d.send({ type: 'STEP', pid: 200, phase: 'kill-temp' });
  d.send({ type: 'REPORT_HELD', pid: 300 });
  d.send({ type: 'STEP', pid: 300, phase: 'dead' }); // late: a task that reported stays so
  d.send(timeout);
  assert.equal(d.value, 'aborting');
  assert.equal(d.snapshot.context.failure?.code, 'PCR_ERR_TIMEOUT');
  assert.equal(
    d.snapshot.context.failure?.message,
    'phase kill-temp timed out after 5000 ms waiting for task 200 (in kill-temp)',
  );
});

test('the reports timeout tells a task that may wait for a pending peer apart from the stuck one', () => {
  const waiting = plan.tasks.find((t) => t.steps.dead.receives.length > 0);
  assert.ok(waiting, 'the sample plan has a task that receives pidfds of dead targets');
  const from = waiting.steps.dead.receives[0]!.from;
  const d = register(new Driver());
  const timeout = d.timeoutEvent;
  for (const pid of WORKERS.filter((p) => p !== waiting.pid && p !== from)) {
    d.send({ type: 'REPORT_HELD', pid });
  }
  d.send({ type: 'STEP', pid: waiting.pid, phase: 'dead' });
  d.send({ type: 'STEP', pid: from, phase: 'dead' });
  d.send(timeout);
  const message = d.snapshot.context.failure?.message ?? '';
  assert.match(message, /^phase dead timed out/);
  assert.match(message, new RegExp(`task ${waiting.pid} \\(in dead, may wait for task ${from}\\)`));
  assert.match(message, new RegExp(`task ${from} \\(in dead\\)`));
});

test('registration timeout names what is missing', () => {
  const d = new Driver();
  const timeout = d.timeoutEvent;
  d.send({ type: 'WORKER_HELLO', pid: 100, restoredPid: 5100 });
  d.send(timeout);
  assert.equal(d.value, 'aborting');
  assert.match(
    d.snapshot.context.failure!.message,
    /^timed out after 5000 ms waiting for task 100 \(children not spawned, no restored pid\), task 200 \(no hello, no restored pid\)/,
  );
  assert.match(d.snapshot.context.failure!.message, /thread 201$/);
  const named = [...d.snapshot.context.failure!.message.matchAll(/task (\d+) \(/g)].map(
    (m) => m[1],
  );
  assert.deepEqual(named, [...new Set(named)], 'each task named once, with all its reasons');
});

test('a hello that contradicts the parent report aborts', () => {
  const d = new Driver();
  d.send({ type: 'xstate.done.actor.spawnRoot', output: { restoredPid: 5100 } });
  d.send({ type: 'WORKER_HELLO', pid: 100, restoredPid: 5999 });
  assert.equal(d.value, 'aborting');
  assert.equal(
    d.snapshot.context.failure?.message,
    'task 100 registered as pid 5999 but was spawned as pid 5100',
  );
  const unknown = new Driver().send({ type: 'WORKER_HELLO', pid: 400, restoredPid: 1 });
  assert.equal(unknown.value, 'aborting');
  assert.match(unknown.snapshot.context.failure!.message, /unknown task 400/);
});

test('a root that cannot be spawned aborts', () => {
  const d = new Driver().send({
    type: 'xstate.error.actor.spawnRoot',
    error: new Error('posix_spawn failed: EAGAIN (11)'),
  });
  assert.equal(d.value, 'aborting');
  assert.equal(
    d.snapshot.context.failure?.message,
    'spawning the root task 100 failed: posix_spawn failed: EAGAIN (11)',
  );
});

test("STEPs say where each task is: a stop names the earliest, an exit the task's own", () => {
  const d = register(new Driver());
  d.send({ type: 'STEP', pid: 100, phase: 'dead' });
  d.send({ type: 'STEP', pid: 200, phase: 'kill-temp' });
  d.send({ type: 'STEP', pid: 300, phase: 'finalize' });
  assert.equal(d.snapshot.context.phase, 'dead');
  d.send({ type: 'REPORT_HELD', pid: 100 });
  assert.equal(d.snapshot.context.phase, 'kill-temp');
  const e = new Driver();
  e.snapshot = d.snapshot;
  e.send({ type: 'WORKER_EXITED', pid: 300, status: 9 });
  assert.equal(
    e.snapshot.context.failure?.message,
    'task 300 exited (killed by signal 9) during phase finalize',
  );
  assert.equal(e.snapshot.context.failure?.phase, 'finalize');
  d.send({ type: 'STOP', reason: 'SIGINT' });
  assert.equal(d.snapshot.context.failure?.message, 'stopped during phase kill-temp: SIGINT');
});

test('STOP before the restore is finished aborts', () => {
  const d = register(new Driver()).send({ type: 'STOP', reason: 'SIGINT' });
  assert.equal(d.value, 'aborting');
  assert.equal(d.snapshot.context.failure?.message, 'stopped during phase open-alive: SIGINT');
});

test('hook treeBuilt: every task registered, the pid map known, no GO sent before it resolves', () => {
  const d = registerOnly(new Driver());
  assert.equal(d.value, 'tree-built');
  assert.deepEqual(hookInput(d, 'treeBuilt'), {
    hook: 'treeBuilt',
    pidMap: SAMPLE_PID_MAP,
    differences: undefined,
  });
  assert.deepEqual(d.sent, [], 'no GO: no pidfd is opened yet');
  hookDone(d, 'treeBuilt');
  assert.equal(d.value, 'phases');
  assert.deepEqual(d.sent, [['*', GO]]);
});

test('a hook that returns { abort } or throws aborts, naming the hook and the reason', () => {
  const d = hookDone(registerOnly(new Driver()), 'treeBuilt', { abort: 'host said no' });
  assert.equal(d.value, 'aborting');
  assert.deepEqual(d.snapshot.context.failure, {
    code: 'PCR_ERR_HOOK_ABORTED',
    phase: 'spawn',
    message: 'hook treeBuilt aborted the restore: host said no',
  });
  assert.deepEqual(d.sent, [
    ['*', { type: 'TEARDOWN', reason: 'hook treeBuilt aborted the restore: host said no' }],
  ]);
  const v = reportAll(register(new Driver()));
  hookDone(v, 'verified');
  v.send({ type: 'xstate.error.actor.hookBeforeHandoff', error: new Error('script exited 3') });
  assert.equal(v.value, 'aborting');
  assert.equal(v.snapshot.context.failure?.code, 'PCR_ERR_HOOK_ABORTED');
  assert.equal(
    v.snapshot.context.failure?.message,
    'hook beforeHandoff aborted the restore: script exited 3',
  );
  v.send({ type: 'xstate.done.actor.abortTree', output: undefined });
  assert.equal(v.snapshot.output?.ok, false);
});

test('a hook that never resolves is bounded by the phase timeout; a task lost meanwhile aborts', () => {
  const d = registerOnly(new Driver());
  d.send(d.timeoutEvent);
  assert.equal(d.value, 'aborting');
  assert.equal(d.snapshot.context.failure?.code, 'PCR_ERR_TIMEOUT');
  assert.equal(d.snapshot.context.failure?.message, 'hook treeBuilt did not finish within 5000 ms');
  const e = registerOnly(new Driver()).send({ type: 'WORKER_EXITED', pid: 200, status: 9 });
  assert.equal(e.value, 'aborting');
  assert.equal(e.snapshot.context.failure?.code, 'PCR_ERR_TASK_EXITED');
});

test('after verification a STOP takes the verified tree down the normal way, not as a failure', () => {
  for (const at of ['verified', 'before-handoff'] as const) {
    const d = reportAll(register(new Driver({ hold: true })));
    if (at === 'before-handoff') hookDone(d, 'verified');
    assert.equal(d.value, at);
    d.send({ type: 'STOP', reason: 'SIGTERM' });
    assert.equal(d.value, 'before-teardown', `STOP in ${at}`);
    d.send({ type: 'STOP', reason: 'SIGTERM again' });
    assert.equal(d.value, 'before-teardown', 'a second STOP changes nothing');
    hookDone(d, 'beforeTeardown');
    d.send({ type: 'xstate.done.actor.tearDownTree', output: undefined });
    assert.equal(d.snapshot.output?.ok, true);
    assert.equal(d.snapshot.output?.failure, undefined);
  }
});

test('toJSON lists the named actors, guards and actions', () => {
  const json = JSON.stringify(coordinatorMachine.toJSON());
  for (const name of [
    'spawnRoot',
    'runHook',
    'hookAborted',
    'recordHookAbort',
    'abortTree',
    'tearDownTree',
    'allRegistered',
    'registrationWrong',
    'completesReports',
    'sendToWorker',
    'broadcast',
    'reportResult',
    'recordRegistration',
    'startTasks',
    'recordStep',
    'phaseTimedOut',
    'compareReports',
    'recordWorkerFailed',
  ]) {
    assert.ok(json.includes(`"${name}"`), `${name} appears in toJSON()`);
  }
});
