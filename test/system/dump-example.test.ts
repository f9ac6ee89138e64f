/**
 * The example builder (src/example) builds what it claims: each scenario is built, then
 * looked at from /proc and kcmp directly (test/fixtures/observe.ts) and compared with
 * BuiltTree.expected; after destroy() no task, zombie or external is left.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { PcrError } from '../../src/errors.js';
import { readChildren } from '../../src/procfs/index.js';
import { buildTree, SpecError } from '../../src/testing/index.js';
import { SCENARIOS } from '../fixtures/scenarios.js';
import { expectedObservation, observeTree } from '../fixtures/observe.js';

for (const { name, spec } of SCENARIOS) {
  test(`example builder: ${name} is what it claims, and leaves nothing behind`, async (t) => {
    const built = await buildTree(spec);
    t.after(() => built.destroy());
    const observed = observeTree(built.taskPids);
    // A running Node task sleeps in epoll (S); R is possible for a moment.
    for (const task of observed.tasks) if (task.procState === 'R') task.procState = 'S';
    assert.deepEqual(observed, expectedObservation(built.expected));
    await built.destroy();
    const everyone = [...built.pids.values()];
    for (const pid of everyone) assert.equal(existsSync(`/proc/${pid}`), false, `pid ${pid} left`);
  });
}

test('example builder refuses a bad spec before starting anything', async () => {
  await assert.rejects(
    buildTree({ root: { name: 'r', pidfds: [{ fd: 3, target: { task: 'nobody' } }] } }),
    (e: unknown) => e instanceof SpecError && /no task 'nobody'/.test(e.message),
  );
  await assert.rejects(
    buildTree({
      root: {
        name: 'r',
        pidfds: [{ fd: 3, sameFileAs: { task: 'c', fd: 3 }, via: 'fork' }],
        children: [{ name: 'c', pidfds: [{ fd: 3, target: { task: 'r' } }] }],
      },
    }),
    /'fork' needs a pidfd of the parent task/,
  );
});

test('a build that fails midway (step time limit) kills and reaps what it started', async () => {
  const before = readChildren(process.pid);
  await assert.rejects(
    buildTree(SCENARIOS.find((s) => s.name === 'external')!.spec, { stepTimeoutMs: 1 }),
    (e: unknown) => e instanceof PcrError && e.code === 'PCR_ERR_TIMEOUT',
  );
  assert.deepEqual(readChildren(process.pid), before);
});
