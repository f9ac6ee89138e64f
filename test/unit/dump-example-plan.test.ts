/** The example spec checks and plan (pure): what is refused, and what the steps are. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  planTree,
  SpecError,
  checkStatus,
  statusScript,
  fileFlagsOf,
} from '../../src/testing/index.js';
import { exited, signaled, type TreeSpec } from '../../src/testing/spec.js';
import { SCENARIOS } from '../fixtures/scenarios.js';

const bad = (spec: TreeSpec, message: RegExp) =>
  assert.throws(
    () => planTree(spec),
    (e: unknown) => e instanceof SpecError && message.test(e.message),
  );

test('every scenario plans, and the benchmark has 9 tasks, 104 pidfds, 32 to dead processes', () => {
  for (const s of SCENARIOS) planTree(s.spec);
  const plan = planTree(SCENARIOS.find((s) => s.name === 'benchmark')!.spec);
  assert.equal(plan.tasks.length, 9);
  assert.equal(plan.pidfds.length, 104);
  const dead = plan.pidfds.filter((p) => 'dead' in (p.origin.spec.target ?? {}));
  assert.equal(dead.length, 32);
  assert.equal(planTree(SCENARIOS.find((s) => s.name === 'tree33')!.spec).tasks.length, 33);
});

test('spec errors name the task and fd at fault', () => {
  bad(
    { root: { name: 'r', pidfds: [{ fd: 2, target: { task: 'r' } }] } },
    /task 'r' fd 2: fd must be/,
  );
  bad(
    {
      root: {
        name: 'r',
        pidfds: [{ fd: 3, target: { task: 'r' }, sameFileAs: { task: 'r', fd: 4 } }],
      },
    },
    /exactly one of/,
  );
  bad({ root: { name: 'r', children: [{ name: 'r' }] } }, /name 'r' is used twice/);
  bad(
    {
      root: {
        name: 'r',
        children: [
          { name: 'z', zombie: { status: 0 }, pidfds: [{ fd: 3, target: { task: 'r' } }] },
        ],
      },
    },
    /zombie: it can hold no pidfds/,
  );
  bad(
    { root: { name: 'r', pidfds: [{ fd: 3, target: { thread: { task: 'r', index: 0 } } }] } },
    /has 0 threads/,
  );
  bad(
    { root: { name: 'r', pidfds: [{ fd: 3, sameFileAs: { task: 'r', fd: 3 } }] } },
    /chain loops at r:3/,
  );
  bad(
    { root: { name: 'r', pidfds: [{ fd: 3, target: { dead: { status: signaled(19) } } }] } },
    /cannot reproduce wait status 19/,
  );
  bad(
    {
      root: {
        name: 'r',
        pidfds: [{ fd: 3, target: { task: 'c' } }],
        children: [{ name: 'c', pidfds: [{ fd: 3, sameFileAs: { task: 'r', fd: 3 } }] }],
      },
    },
    /steps wait on each other/,
  );
});

test('status scripts and file flags', () => {
  assert.equal(statusScript(exited(7)), 'exit 7');
  assert.equal(statusScript(signaled(15)), 'ulimit -c 0; kill -15 $$');
  assert.doesNotThrow(() => checkStatus(signaled(11), 'x'));
  assert.throws(() => checkStatus(0x8b, 'x'), /cannot reproduce/); // core bit
  assert.equal(fileFlagsOf({ fd: 3, target: { task: 'a' } }), 0o2);
  assert.equal(fileFlagsOf({ fd: 3, target: { task: 'a' }, nonblock: true, thread: true }), 0o4202);
  assert.equal(fileFlagsOf({ fd: 3, target: { deadThread: true } }), 0o202);
  assert.equal(fileFlagsOf({ fd: 3, target: { task: 'a' }, accessMode: 'rdonly' }), 0o100000);
});

test('fork inheritance is part of the spawn; the parent finalizes after its children', () => {
  const plan = planTree(SCENARIOS.find((s) => s.name === 'sharedFork')!.spec);
  const spawnA = plan.steps.find((s) => s.step.op === 'spawn' && s.step.task === 'a')!;
  assert.deepEqual(spawnA.step, {
    op: 'spawn',
    by: 'root',
    task: 'a',
    inherit: [
      [3, 3],
      [4, 9],
    ],
    reserve: [],
  });
  assert.deepEqual(spawnA.needs, ['task:root', 'fd:root:3', 'fd:root:4']);
  const fin = plan.steps.find((s) => s.step.op === 'finalize' && s.step.by === 'root')!;
  assert.ok(fin.needs.includes('task:a'));
});
