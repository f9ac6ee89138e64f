/**
 * Pure parts of same pids and --pidns new: the planner's refusals for pid namespaces, the
 * coordinator as opener of external targets and their verification as Pid 0,
 * the pid-map half of the same-pid verification, the PCR_PID_RACE hook's syntax, the
 * option check, the innermost pid.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PcrError } from '../../src/errors.js';
import { coordinatorSends, planRestore } from '../../src/plan/planner.js';
import { COORDINATOR_OPENER } from '../../src/plan/types.js';
import { compareReports } from '../../src/verify/compare.js';
import { samePidDifferences } from '../../src/verify/same-pids.js';
import { parsePidRace } from '../../src/sys/pid-choose.js';
import { innermostPid } from '../../src/launch/ns-pids.js';
import { resolveRestoreOptions } from '../../src/restore/options.js';
import { BOOT_ID, RDWR, file, image, target, task } from '../fixtures/plan-images.js';

/** A container-like tree: root 5000 is pid 1 of its namespace, child 5001 is pid 7. */
function nsImage(rootInner = 1, childLevels = 2) {
  return image(
    5000,
    [
      task(5000, 4000, [[3, 0]], { nsPids: [5000, rootInner] }),
      task(5001, 5000, [], { nsPids: childLevels === 2 ? [5001, 7] : [5001, 7, 1] }),
    ],
    [file(0, 900, RDWR)],
    [target(900, 'in-tree-alive', { pid: 5001, taskPid: 5001, nsPids: [5001, 7] })],
  );
}

const refusal = (re: RegExp) => (e: unknown) =>
  e instanceof PcrError && e.code === 'PCR_ERR_UNSUPPORTED' && re.test(e.message);

test('a tree in a nested namespace: refused without --pidns new, planned with it', () => {
  assert.throws(
    () => planRestore(nsImage(), { currentBootId: BOOT_ID }),
    refusal(/restore --pidns new/),
  );
  const plan = planRestore(nsImage(), { currentBootId: BOOT_ID, pidnsNew: true, samePids: true });
  assert.deepEqual(
    plan.tasks.map((t) => t.pid),
    [5000, 5001],
  );
});

test('--pidns new --same-pids: a root that was not pid 1 of its namespace is refused', () => {
  assert.throws(
    () => planRestore(nsImage(3), { currentBootId: BOOT_ID, pidnsNew: true, samePids: true }),
    refusal(
      /the root task 5000 \(t5000\) was not the init \(pid 1\) of its pid namespace \(NSpid 5000 3\)/,
    ),
  );
  // Without --same-pids the root simply becomes pid 1.
  planRestore(nsImage(3), { currentBootId: BOOT_ID, pidnsNew: true });
});

test('--pidns new: a tree spanning several nested namespaces is refused by name', () => {
  assert.throws(
    () => planRestore(nsImage(1, 3), { currentBootId: BOOT_ID, pidnsNew: true }),
    refusal(/task 5001 \(t5001\) lives in another pid namespace than the root \(NSpid 5001 7 1\)/),
  );
});

test('--pidns new: the coordinator opens an external target and sends it to its holders', () => {
  const img = image(
    100,
    [task(100, 1, [[3, 0]]), task(101, 100, [[4, 0]])],
    [file(0, 900, RDWR)],
    [target(900, 'external', { pid: 777, comm: 'sleep', nsPids: [777] })],
  );
  // In our own namespace a holder opens it and sends it to the other.
  const own = planRestore(img, { currentBootId: BOOT_ID });
  assert.equal(own.files[0]!.opener, 101);
  assert.deepEqual(coordinatorSends(own), []);
  // Under --pidns new no holder can reach pid 777: the coordinator is the opener.
  const plan = planRestore(img, { currentBootId: BOOT_ID, pidnsNew: true });
  assert.equal(plan.pidnsNew, true);
  assert.equal(plan.files[0]!.opener, COORDINATOR_OPENER);
  assert.equal(plan.files[0]!.how.strategy, 'external-reopen');
  assert.deepEqual(coordinatorSends(plan), [
    { to: 100, fileIds: [0] },
    { to: 101, fileIds: [0] },
  ]);
  for (const t of plan.tasks) {
    const steps = t.steps['open-alive'];
    assert.deepEqual(steps.opens, [], `task ${t.pid} opens nothing`);
    assert.deepEqual(steps.sends, [], `task ${t.pid} sends nothing`);
    assert.deepEqual(
      steps.receives.map((r) => [r.from, r.files.map((f) => f.fileId)]),
      [[COORDINATOR_OPENER, [0]]],
      `task ${t.pid} receives it from the coordinator`,
    );
  }
  // As dead, a temp of the creator stands in for it: nothing from the coordinator.
  const dead = planRestore(img, { currentBootId: BOOT_ID, pidnsNew: true, externalDead: true });
  assert.deepEqual(coordinatorSends(dead), []);
  assert.equal(dead.files[0]!.opener, 101);
});

test('--pidns new: an external pidfd is verified as Pid 0 (not visible) with its dumped ino', () => {
  const img = image(
    100,
    [task(100, 1, [[3, 0]])],
    [file(0, 900, RDWR)],
    [target(900, 'external', { pid: 777, comm: 'sleep', nsPids: [777] })],
  );
  const pidMap = { pids: [{ dumped: 100, restored: 1 }], tids: [] };
  const report = (targetPid: number, ino = '900') => [
    {
      pid: 100,
      restoredPid: 1,
      fds: [{ fd: 3, flags: RDWR, cloexec: true, ino, targetPid, fileClass: '1:3' }],
    },
  ];
  const kinds = (r: ReturnType<typeof report>, pidnsNew: boolean) =>
    compareReports(img, pidMap, r, { pidnsNew }).map((d) => d.kind);
  assert.deepEqual(kinds(report(0), true), []);
  assert.deepEqual(kinds(report(777), false), []);
  // Visible inside the new namespace would be another process; 0 in our own is wrong.
  assert.deepEqual(kinds(report(777), true), ['target']);
  assert.deepEqual(kinds(report(0), false), ['target']);
  // Not visible, but another process (ino), or reaped meanwhile (Pid -1).
  assert.deepEqual(kinds(report(0, '901'), true), ['target']);
  assert.deepEqual(kinds(report(-1), true), ['target']);
});

test('same-pid verification: a task away from its dumped pid is a difference', () => {
  const img = nsImage();
  const inNs = {
    pids: [
      { dumped: 5000, restored: 1 },
      { dumped: 5001, restored: 7 },
    ],
    tids: [],
  };
  assert.deepEqual(samePidDifferences(img, inNs, true), []);
  const wrong = {
    pids: [
      { dumped: 5000, restored: 1 },
      { dumped: 5001, restored: 8 },
    ],
    tids: [],
  };
  assert.deepEqual(samePidDifferences(img, wrong, true), [
    {
      kind: 'pid',
      pid: 5001,
      message: 'task 5001 (t5001): restored at pid 8, not at its dumped pid 7',
    },
  ]);
  // In our own namespace the dumped pid itself is wanted (the root's parent is not checked).
  const own = image(100, [task(100, 1, [])], [], []);
  assert.deepEqual(
    samePidDifferences(own, { pids: [{ dumped: 100, restored: 100 }], tids: [] }),
    [],
  );
  assert.equal(
    samePidDifferences(own, { pids: [{ dumped: 100, restored: 101 }], tids: [] })[0]?.message,
    'task 100 (t100): restored at pid 101, not at its dumped pid 100',
  );
});

test('PCR_PID_RACE is <pid>:<times>; innermostPid is the last NSpid entry', () => {
  assert.deepEqual(parsePidRace('4242:2'), { pid: 4242, times: 2 });
  assert.equal(parsePidRace(undefined), undefined);
  assert.throws(
    () => parsePidRace('4242'),
    (e: unknown) => e instanceof PcrError && e.code === 'PCR_ERR_USAGE',
  );
  assert.equal(innermostPid({ pid: 5001, nsPids: [5001, 7] }), 7);
  assert.equal(innermostPid({ pid: 5001, nsPids: [] }), 5001);
});

test("restore option pidns is 'new' or nothing", () => {
  assert.equal(resolveRestoreOptions({ pidns: 'new' }).pidnsNew, true);
  assert.equal(resolveRestoreOptions({}).pidnsNew, false);
  assert.throws(
    () => resolveRestoreOptions({ pidns: 'old' as 'new' }),
    (e: unknown) => e instanceof PcrError && e.code === 'PCR_ERR_USAGE' && /pidns/.test(e.message),
  );
});
