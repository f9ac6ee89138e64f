/**
 * Faults during a restore, injected through the workers' test hook (PCR_FAULT,
 * docs/restore.md) or made real (an external target that died): each must end the restore
 * with a non-zero code and a message naming the task, the phase and the cause, and leave
 * no process, zombie or run directory behind.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { restoreImage, type RestoreOptions } from '../../src/restore/restore-image.js';
import { PcrError } from '../../src/errors.js';
import type { TraceEvent } from '../../src/protocol/trace.js';
import { alive, sharedFork, external, tree33 } from '../fixtures/scenarios.js';
import { buildAndDump, waitGone } from '../helpers/restore-run.js';
import { descendantsOf, fdinfo } from '../helpers/proc-view.js';
import { exitStatusThroughCopy } from '../helpers/restored-view.js';
import { planRestore } from '../../src/plan/planner.js';

/** Runs a restore expected to fail; returns the error and every process it ever started. */
async function failingRestore(
  image: Parameters<typeof restoreImage>[0],
  { onTrace, ...opts }: RestoreOptions & { onTrace?: (e: TraceEvent) => void },
): Promise<{ err: PcrError; started: number[] }> {
  const started = new Set<number>();
  const before = new Set(descendantsOf(process.pid));
  const trace = (e: TraceEvent): void => {
    // Every worker's pid, and (while it lives) its descendants: temps, zombies, children.
    if (e.source !== 'coordinator' && e.pid > 0) {
      started.add(e.pid);
      try {
        descendantsOf(e.pid).forEach((p) => started.add(p));
      } catch {
        // it went away meanwhile
      }
      onTrace?.(e);
    }
  };
  const err = await restoreImage(image, { ...opts, trace, workerStderr: null }).then(
    () => assert.fail('the restore succeeded'),
    (e: unknown) => e as PcrError,
  );
  assert.ok(err instanceof PcrError, `a PcrError: ${String(err)}`);
  // Before this test reaps anything: once restoreImage settles, no process it started
  // exists (not even as a zombie) and nothing came back to us (we are a subreaper).
  const below = descendantsOf(process.pid).filter((p) => !before.has(p));
  assert.deepEqual(below, [], 'nothing of the restore below us when restoreImage settles');
  assert.deepEqual(
    [...started].filter(exists),
    [],
    'no process of the restore exists when restoreImage settles',
  );
  return { err, started: [...started] };
}

function exists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const childOf = (image: Parameters<typeof restoreImage>[0]): number =>
  image.tasks.find((t) => t.pid !== image.rootPid && t.state !== 'zombie')!.pid;

test('a worker that crashes (SIGKILL) in open-alive: task, phase and cause named', async (t) => {
  const { image, dir } = await buildAndDump(t, alive);
  const victim = childOf(image);
  const { err, started } = await failingRestore(image, {
    runDirParent: dir,
    fault: `crash@${victim}:open-alive`,
  });
  assert.equal(err.code, 'PCR_ERR_TASK_EXITED');
  assert.match(
    err.message,
    new RegExp(`task ${victim} exited \\(killed by signal 9\\) during phase open-alive`),
  );
  assert.ok(started.length >= 2);
  assert.deepEqual(await waitGone(started), []);
  assert.deepEqual(readdirSync(dir), []);
});

test('a worker that hangs in phase dead: the phase times out naming it', async (t) => {
  const { image, dir } = await buildAndDump(t, sharedFork);
  const victim = childOf(image);
  const { err, started } = await failingRestore(image, {
    runDirParent: dir,
    timeoutMs: 3000,
    fault: `hang@${victim}:dead`,
  });
  assert.equal(err.code, 'PCR_ERR_TIMEOUT');
  assert.match(
    err.message,
    new RegExp(`phase dead timed out after 3000 ms waiting for .*task ${victim}\\b`),
  );
  assert.deepEqual(await waitGone(started), []);
  assert.deepEqual(readdirSync(dir), []);
});

test('a worker stuck in a busy loop in finalize: timed out, then SIGKILLed', async (t) => {
  const { image, dir } = await buildAndDump(t, alive);
  const victim = image.rootPid;
  const { err, started } = await failingRestore(image, {
    runDirParent: dir,
    timeoutMs: 3000,
    teardownGraceMs: 500,
    fault: `spin@${victim}:finalize`,
  });
  assert.equal(err.code, 'PCR_ERR_TIMEOUT');
  assert.match(err.message, new RegExp(`phase finalize timed out .* waiting for task ${victim}`));
  assert.deepEqual(await waitGone(started), []);
  assert.deepEqual(readdirSync(dir), []);
});

test('a worker that reports an error: code, task, phase and message come through', async (t) => {
  const { image, dir } = await buildAndDump(t, alive);
  const victim = childOf(image);
  const { err, started } = await failingRestore(image, {
    runDirParent: dir,
    fault: `fail@${victim}:finalize`,
  });
  assert.equal(err.code, 'PCR_ERR_RESTORE');
  assert.match(
    err.message,
    new RegExp(`task ${victim} failed in phase finalize: injected failure \\(PCR_FAULT\\)`),
  );
  assert.deepEqual(await waitGone(started), []);
  assert.deepEqual(readdirSync(dir), []);
});

test('an external target that died after the dump: named as gone, nothing left', async (t) => {
  const { tree, image, dir } = await buildAndDump(t, external);
  const ext = tree.pids.get('ext')!;
  process.kill(ext, 'SIGKILL');
  assert.deepEqual(await waitGone([ext]), []);
  const { err, started } = await failingRestore(image, { runDirParent: dir });
  assert.equal(err.code, 'PCR_ERR_RESTORE');
  assert.match(
    err.message,
    new RegExp(`failed in phase open-alive: external target .*pid ${ext}.*gone`),
  );
  assert.deepEqual(await waitGone(started), []);
  assert.deepEqual(readdirSync(dir), []);
});

test('with externalDead the external targets come back dead (SIGKILL), seen from /proc', async (t) => {
  const { tree, image, dir } = await buildAndDump(t, external);
  process.kill(tree.pids.get('ext')!, 'SIGKILL');
  const stop = new AbortController();
  let seen: Array<{ pid: number; status: number | undefined }> = [];
  const result = await restoreImage(image, {
    runDirParent: dir,
    externalDead: true,
    hold: true,
    signal: stop.signal,
    onVerified: ({ pidMap }) => {
      const root = pidMap.pids.find((p) => p.dumped === image.rootPid)!.restored;
      seen = [3, 4, 5].map((fd) => ({
        pid: fdinfo(root, fd).pid,
        status: exitStatusThroughCopy(root, fd),
      }));
      stop.abort('seen');
    },
  });
  assert.equal(result.ok, true, JSON.stringify(result.differences));
  assert.deepEqual(seen, [
    { pid: -1, status: 9 },
    { pid: -1, status: 9 },
    { pid: -1, status: 9 },
  ]);
  assert.deepEqual(readdirSync(dir), []);
});

test('the root worker crashes as soon as its plan arrives (spawn): abort, nothing left', async (t) => {
  const { image, dir } = await buildAndDump(t, sharedFork);
  const { err, started } = await failingRestore(image, {
    runDirParent: dir,
    timeoutMs: 3000,
    fault: `crash@${image.rootPid}:spawn`,
  });
  assert.equal(err.code, 'PCR_ERR_TASK_EXITED');
  assert.match(
    err.message,
    new RegExp(`task ${image.rootPid} exited \\(killed by signal 9\\) during phase spawn`),
  );
  assert.deepEqual(await waitGone(started), []);
  assert.deepEqual(readdirSync(dir), []);
});

test('abort during registration of a deep tree: nothing left', async (t) => {
  const { image, dir } = await buildAndDump(t, tree33);
  const stop = new AbortController();
  const { err, started } = await failingRestore(image, {
    runDirParent: dir,
    signal: stop.signal,
    // The first worker's first state change: most of the 33 workers are not registered.
    onTrace: () => stop.abort('test abort'),
  });
  assert.match(err.message, /test abort/);
  assert.deepEqual(await waitGone(started), []);
  assert.deepEqual(readdirSync(dir), []);
});

test('a worker with children fails while spawning them: nothing left', async (t) => {
  const { image, dir } = await buildAndDump(t, tree33);
  const mid = image.tasks.find((t) => t.ppid === image.rootPid)!.pid;
  const { err, started } = await failingRestore(image, {
    runDirParent: dir,
    fault: `fail@${mid}:spawn`,
  });
  assert.equal(err.code, 'PCR_ERR_RESTORE');
  assert.match(err.message, new RegExp(`task ${mid} failed in phase spawn`));
  assert.deepEqual(await waitGone(started), []);
  assert.deepEqual(readdirSync(dir), []);
});

test('the root worker (with children) crashes in a late phase: root named, nothing left', async (t) => {
  const { image, dir } = await buildAndDump(t, alive);
  const { err, started } = await failingRestore(image, {
    runDirParent: dir,
    fault: `crash@${image.rootPid}:finalize`,
  });
  assert.equal(err.code, 'PCR_ERR_TASK_EXITED');
  assert.match(
    err.message,
    new RegExp(`task ${image.rootPid} exited \\(killed by signal 9\\) during phase finalize`),
  );
  assert.deepEqual(await waitGone(started), []);
  assert.deepEqual(readdirSync(dir), []);
});

test('a worker with children crashes: it is named, not a child that died with it', async (t) => {
  const { image, dir } = await buildAndDump(t, tree33);
  const mid = image.tasks.find((t) => t.ppid === image.rootPid)!.pid;
  const { err, started } = await failingRestore(image, {
    runDirParent: dir,
    fault: `crash@${mid}:open-alive`,
  });
  assert.equal(err.code, 'PCR_ERR_TASK_EXITED', err.message);
  assert.match(
    err.message,
    new RegExp(`task ${mid} exited \\(killed by signal 9\\) during phase open-alive`),
  );
  assert.deepEqual(await waitGone(started), []);
  assert.deepEqual(readdirSync(dir), []);
});

/**
 * The points where a task waits on another after GO (docs/restore.md "Phases"): a receiver
 * in wait-for-fd waits for its creator's pidfds, in wait-for-temp-exit for its creator's
 * notice that the temps are reaped. The creator hangs at its step (test hook) until the
 * receiver is seen waiting in the trace, then (100 ms later) is SIGKILLed from outside: the restore must
 * fail naming the creator, take the tree down, and leave nothing.
 */
for (const [step, hangsIn, waiting] of [
  ['dead', 'become-creator.opening', 'wait-for-fd'],
  ['kill-temp', 'kill-temp', 'wait-for-temp-exit'],
] as const) {
  test(`a creator killed while a receiver is in ${waiting}: the creator is named, nothing left`, async (t) => {
    const { image, dir } = await buildAndDump(t, sharedFork);
    const plan = planRestore(image);
    const creator = plan.deadGroups[0]!.creator;
    const receiver = plan.tasks.find((x) =>
      x.steps.dead.receives.some((r) => r.from === creator),
    )!.pid;
    assert.notEqual(receiver, creator);
    let creatorPid = 0;
    let creatorThere = false;
    let receiverThere = false;
    let killedWhile: string | undefined;
    const { err, started } = await failingRestore(image, {
      runDirParent: dir,
      timeoutMs: 20_000,
      fault: `hang@${creator}:${step}`,
      onTrace: (e) => {
        if (e.source === `task:${creator}` && e.pid > 0) creatorPid = e.pid;
        if (e.source === `task:${creator}` && e.to === hangsIn) creatorThere = true;
        if (e.source === `task:${receiver}` && e.to === waiting) receiverThere = true;
        if (creatorThere && receiverThere && !killedWhile) {
          killedWhile = waiting;
          // Once its STEP is out (a task says where it is after 5 ms in a step).
          setTimeout(() => process.kill(creatorPid, 'SIGKILL'), 100);
        }
      },
    });
    assert.equal(killedWhile, waiting, `the receiver ${receiver} was seen in ${waiting}`);
    assert.equal(err.code, 'PCR_ERR_TASK_EXITED', err.message);
    assert.match(
      err.message,
      new RegExp(`task ${creator} exited \\(killed by signal 9\\) during phase ${step}`),
    );
    assert.deepEqual(await waitGone(started), []);
    assert.deepEqual(readdirSync(dir), []);
  });
}
