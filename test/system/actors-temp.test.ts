/**
 * The temporary process x: pidfds opened to it (plain, nonblocking, thread) become
 * pidfds to a reaped process with exactly the recorded wait status, all of one ino; x is
 * dead (a zombie) before kill-temp and its pidfds still open, showing it until
 * finishTemp reaps it; abortTemp reaps it with its recorded status; a worker starts its
 * x in spawnChildren, before it reports (so before GO), and spawnTemp takes them; a late
 * prestartTemps starts none once the dead phase took over; a creator whose temp died
 * wrong sends no notice.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  startTemp,
  openTempPidfd,
  finishTemp,
  abortTemp,
  deathFor,
} from '../../src/sys/temp-process.js';
import {
  closeQuiet,
  pidfdGetInfo,
  PIDFD_INFO,
  PIDFD_NONBLOCK,
  PIDFD_THREAD,
} from '../../native/index.js';
import { PcrError } from '../../src/errors.js';
import { fdinfo, exists, fdNumbers, fdLink, childrenOf, procState } from '../helpers/proc-view.js';
import { waitUntil } from '../helpers/holder.js';
import { WorkerEffects } from '../../src/actors/task-effects.js';
import type { TempStep } from '../../src/plan/types.js';
import { EMPTY_PID_MAP } from '../../src/protocol/pidmap.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const STATUSES = [0, 3 << 8, 255 << 8, 15, 9, 2, 3, 10, 11, 6];

for (const status of STATUSES) {
  test(`x dies with wait status ${status}; its pidfds show it reaped with that status`, async () => {
    const temp = startTemp(status);
    const fds = [0, PIDFD_NONBLOCK, PIDFD_THREAD].map((f) => openTempPidfd(temp, f));
    try {
      const pid = temp.pid;
      await finishTemp(temp);
      assert.equal(exists(pid), false, 'x is reaped');
      const inos = new Set(fds.map((fd) => fdinfo(process.pid, fd).ino));
      assert.equal(inos.size, 1);
      for (const fd of fds) {
        assert.equal(fdinfo(process.pid, fd).pid, -1);
        const info = pidfdGetInfo(fd, PIDFD_INFO.EXIT);
        assert.equal(info.hasExit, true);
        assert.equal(info.exitCode, status);
      }
      assert.equal(fdinfo(process.pid, fds[2]!).flags & 0o200, 0o200, 'PIDFD_THREAD kept');
      assert.equal(temp.pidfd, -1, 'helper pidfd closed');
    } finally {
      abortTemp(temp);
      fds.forEach(closeQuiet);
    }
  });
}

test('statuses no process can die with, or only with a core file, are refused', () => {
  for (const bad of [11 | 0x80, 0x137f, 17, 19, 256 << 8, -1]) {
    assert.throws(() => deathFor(bad), PcrError, `status ${bad}`);
  }
});

test('x is dead before kill-temp and still opens; the reap makes its pidfds say -1', async () => {
  const temp = startTemp(5 << 8);
  const fds: number[] = [];
  try {
    await waitUntil(`x ${temp.pid} is dead`, () => procState(temp.pid) === 'Z');
    for (const f of [0, PIDFD_NONBLOCK, PIDFD_THREAD]) fds.push(openTempPidfd(temp, f));
    for (const fd of fds) {
      assert.equal(fdinfo(process.pid, fd).pid, temp.pid, 'a zombie: still its pid');
      assert.equal(pidfdGetInfo(fd, PIDFD_INFO.EXIT).hasExit, false, 'not reaped yet');
    }
    await finishTemp(temp);
    for (const fd of fds) {
      assert.equal(fdinfo(process.pid, fd).pid, -1, 'reaped');
      assert.equal(pidfdGetInfo(fd, PIDFD_INFO.EXIT).exitCode, 5 << 8);
    }
  } finally {
    abortTemp(temp);
    fds.forEach(closeQuiet);
  }
});

test('abortTemp reaps a dead x with its recorded status, not 9', async () => {
  const temp = startTemp(3 << 8);
  await waitUntil(`x ${temp.pid} is dead`, () => procState(temp.pid) === 'Z');
  assert.equal(abortTemp(temp), 3 << 8);
  assert.equal(temp.pidfd, -1);
  assert.equal(abortTemp(temp), undefined, 'reaped already');
});

test('a wrong status is reported, not assumed', async () => {
  const temp = startTemp(3 << 8);
  temp.status = 4 << 8; // what the creator expects differs from what x does
  await assert.rejects(finishTemp(temp), /died with exit 3 \(status 768\), expected exit 4/);
});

/** Our pidfds (/proc/self/fd) and our children: what a stray x leaves behind. */
function pidfdsAndChildren(): { pidfds: number[]; children: number[] } {
  return {
    pidfds: fdNumbers(process.pid).filter((fd) => fdLink(process.pid, fd) === 'anon_inode:[pidfd]'),
    children: childrenOf(process.pid),
  };
}

/** One dead group per status, group ids (and inos) 0, 1, 2, …. */
const tempSteps = (statuses: readonly number[]): TempStep[] =>
  statuses.map((exitStatus, groupId) => ({
    groupId,
    ino: String(groupId),
    exitStatus,
    statusSource: 'recorded',
  }));

// x of the dead phase are started by spawnChildren (before CHILDREN_SPAWNED, so before
// GO): started after it (a setImmediate), the last-registered creators spawned theirs
// inside become-creator, after GO (docs/restore.md "Session 6").
test('spawnChildren starts the planned x before it returns; spawnTemp takes them', async () => {
  const rundir = mkdtempSync(join(tmpdir(), 'pcr-temp-test-'));
  const effects = new WorkerEffects({ dumpedPid: 4243, rundir, stderrFd: null, trace: false });
  try {
    const before = pidfdsAndChildren();
    const steps = tempSteps([0, 5 << 8, 15]);
    effects.planTemps(steps);
    await effects.spawnChildren({ pid: 4243, workerChildren: [], zombieChildren: [], threads: [] });
    const after = pidfdsAndChildren();
    const started = after.children.filter((c) => !before.children.includes(c));
    assert.equal(started.length, steps.length, 'one x per dead group, before any GO');
    assert.equal(after.pidfds.length, before.pidfds.length + steps.length, 'our pidfd of each x');
    const { temps } = await effects.spawnTemp({ pid: 4243, temps: steps });
    assert.deepEqual(
      temps.map((t) => t.pid).sort((a, b) => a - b),
      started,
      'spawnTemp took the prestarted x, started none',
    );
    assert.deepEqual(pidfdsAndChildren().children, after.children);
    const { reaped } = await effects.finishTemp({
      pid: 4243,
      temps,
      notify: [],
      pidMap: EMPTY_PID_MAP,
    });
    assert.deepEqual(
      reaped.map((r) => r.status),
      steps.map((s) => s.exitStatus),
    );
    assert.deepEqual(pidfdsAndChildren(), before, 'every x reaped, no pidfd of one left');
  } finally {
    await effects.tearDown({ pid: 4243, reason: 'test' });
    rmSync(rundir, { recursive: true, force: true });
  }
});

// prestartTemps once ran from a setImmediate (run.ts), which PHASE messages could
// overtake: coming after kill-temp reaped some groups, it started a new x for each of
// them that was never reaped, and our pidfd of it stayed open in the verified tree.
test('a late prestartTemps after spawnTemp and finishTemp starts no x', async () => {
  const rundir = mkdtempSync(join(tmpdir(), 'pcr-temp-test-'));
  const effects = new WorkerEffects({ dumpedPid: 4242, rundir, stderrFd: null, trace: false });
  try {
    const before = pidfdsAndChildren();
    const steps = tempSteps([0, 7 << 8, 15]);
    const { temps } = await effects.spawnTemp({ pid: 4242, temps: steps });
    const { reaped } = await effects.finishTemp({
      pid: 4242,
      temps,
      notify: [],
      pidMap: EMPTY_PID_MAP,
    });
    assert.deepEqual(
      reaped.map((r) => r.status),
      steps.map((s) => s.exitStatus),
    );
    effects.prestartTemps(steps);
    assert.deepEqual(pidfdsAndChildren(), before, 'no x and no pidfd of one left');
  } finally {
    await effects.tearDown({ pid: 4242, reason: 'test' });
    rmSync(rundir, { recursive: true, force: true });
  }
});

// kill-temp reaps, checks, and only then sends its notices: a receiver must not report
// a dead target whose x died otherwise than recorded. The notice would go to task 4300's
// fd socket, which does not exist: a send fails the call (the positive control below).
test('finishTemp sends no notice when a temp died otherwise than planned', async () => {
  const rundir = mkdtempSync(join(tmpdir(), 'pcr-temp-test-'));
  const effects = new WorkerEffects({ dumpedPid: 4244, rundir, stderrFd: null, trace: false });
  try {
    const steps = tempSteps([0, 6 << 8]);
    const { temps } = await effects.spawnTemp({ pid: 4244, temps: steps });
    const expected = temps.map((t, i) => (i === 1 ? { ...t, exitStatus: 9 } : t));
    const { reaped } = await effects.finishTemp({
      pid: 4244,
      temps: expected,
      notify: [4300],
      pidMap: EMPTY_PID_MAP,
    });
    assert.deepEqual(
      reaped.map((r) => r.status),
      [0, 6 << 8],
      'both reaped, no notice tried',
    );
    const more = await effects.spawnTemp({ pid: 4244, temps: [{ ...steps[0]!, groupId: 7 }] });
    await assert.rejects(
      effects.finishTemp({ pid: 4244, temps: more.temps, notify: [4300], pidMap: EMPTY_PID_MAP }),
      'all right: the notice is sent (and fails here, no socket)',
    );
  } finally {
    await effects.tearDown({ pid: 4244, reason: 'test' });
    rmSync(rundir, { recursive: true, force: true });
  }
});
