import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Image } from '../../src/model/image.js';
import { FLAGS } from '../../src/model/image.js';
import type { FdReport, PidMap } from '../../src/protocol/messages.js';
import { compareReports } from '../../src/verify/compare.js';
import type { DifferenceKind } from '../../src/verify/compare.js';
import { SAMPLE_PID_MAP, faithfulReportsFor, sampleImage } from '../fixtures/plan-images.js';

const PID_MAP: PidMap = SAMPLE_PID_MAP;
const faithfulReports = (img: Image, externalDead = false) =>
  faithfulReportsFor(img, PID_MAP, externalDead);

function kinds(reports: FdReport[], img: Image = sampleImage()): DifferenceKind[] {
  return compareReports(img, PID_MAP, reports).map((d) => d.kind);
}

function fdOf(reports: FdReport[], pid: number, fd: number) {
  const r = reports.find((x) => x.pid === pid)!.fds.find((x) => x.fd === fd);
  assert.ok(r, `task ${pid} fd ${fd} is reported`);
  return r;
}

test('a faithful restore shows no difference', () => {
  assert.deepEqual(compareReports(sampleImage(), PID_MAP, faithfulReports(sampleImage())), []);
});

test('external targets planned as dead are expected dead by SIGKILL', () => {
  const reports = faithfulReports(sampleImage(), true);
  assert.deepEqual(compareReports(sampleImage(), PID_MAP, reports, { externalDead: true }), []);
  assert.deepEqual(kinds(reports), ['target']);
});

test('a missing report, an unexpected report', () => {
  const reports = faithfulReports(sampleImage()).filter((r) => r.pid !== 200);
  reports.push({ pid: 400, restoredPid: 5400, fds: [] });
  const diffs = compareReports(sampleImage(), PID_MAP, reports);
  assert.deepEqual(
    diffs.map((d) => [d.kind, d.pid]),
    [
      ['unexpected-report', 400],
      ['missing-report', 200],
    ],
  );
  // Without 200's report its fds leave the classes: 1000's class loses nothing else.
});

test('a missing fd and an extra fd are named', () => {
  const reports = faithfulReports(sampleImage());
  const r300 = reports.find((r) => r.pid === 300)!;
  r300.fds = r300.fds.filter((f) => f.fd !== 3);
  r300.fds.push({ fd: 9, flags: 2, cloexec: true, ino: '1', targetPid: 42, fileClass: 'x' });
  const diffs = compareReports(sampleImage(), PID_MAP, reports);
  assert.deepEqual(
    diffs.map((d) => d.message),
    [
      'task 300 fd 3: no pidfd there after restore',
      'task 300 fd 9: pidfd to pid 42 ino 1 is not in the image',
    ],
  );
});

test('flags and close-on-exec differences', () => {
  const reports = faithfulReports(sampleImage());
  fdOf(reports, 300, 3).flags = FLAGS.O_RDWR; // lost O_NONBLOCK
  fdOf(reports, 100, 4).cloexec = true;
  const diffs = compareReports(sampleImage(), PID_MAP, reports);
  assert.deepEqual(
    diffs.map((d) => d.message),
    [
      'task 100 fd 4: close-on-exec is set, expected clear',
      'task 300 fd 3: flags 02 (O_RDWR), expected 04002 (O_RDWR|O_NONBLOCK)',
    ],
  );
});

test('wrong targets: another pid, alive instead of dead, wrong thread, external ino', () => {
  const reports = faithfulReports(sampleImage());
  fdOf(reports, 200, 4).targetPid = 5300; // should be 5200 (task 200)
  Object.assign(fdOf(reports, 200, 5), { targetPid: 5999 }); // dead target shows alive
  delete fdOf(reports, 200, 5).exitStatus;
  fdOf(reports, 100, 8).targetPid = 5200; // thread 201 -> restored tid 5201
  fdOf(reports, 300, 4).ino = '5001'; // the external process was replaced
  const diffs = compareReports(sampleImage(), PID_MAP, reports).filter((d) => d.kind === 'target');
  assert.deepEqual(
    diffs.map((d) => [d.pid, d.fd]),
    [
      [100, 8],
      [200, 4],
      [200, 5],
      [300, 4],
    ],
  );
  assert.match(diffs[1]!.message, /expected pid 5200, found pid 5300/);
  assert.match(diffs[3]!.message, /external target ino differs: expected pid 777 ino 5000/);
});

test('exit status differences: another status, a live target that exited', () => {
  const reports = faithfulReports(sampleImage());
  fdOf(reports, 300, 6).exitStatus = 15;
  fdOf(reports, 300, 3).exitStatus = 0; // the zombie target must not be reaped
  const diffs = compareReports(sampleImage(), PID_MAP, reports);
  assert.deepEqual(
    diffs.map((d) => [d.kind, d.pid, d.fd]),
    [
      ['exit-status', 300, 3],
      ['exit-status', 300, 6],
    ],
  );
  assert.match(
    diffs[1]!.message,
    /expected a dead process \(killed by signal 9\), found a dead process \(killed by signal 15\)/,
  );
});

test('a zombie target still running is refused by its /proc state', () => {
  const reports = faithfulReports(sampleImage());
  Object.assign(fdOf(reports, 300, 3), { targetState: 'S' });
  delete fdOf(reports, 300, 3).targetExitCode;
  const diffs = compareReports(sampleImage(), PID_MAP, reports);
  assert.deepEqual(
    diffs.map((d) => [d.kind, d.pid, d.fd]),
    [['zombie-state', 300, 3]],
  );
  assert.match(diffs[0]!.message, /target is not a zombie: expected pid 5400 .*a zombie, exit 3\)/);
});

test('a live task target that is a zombie after restore is refused', () => {
  const reports = faithfulReports(sampleImage());
  Object.assign(fdOf(reports, 200, 4), { targetState: 'Z', targetExitCode: 0 });
  const diffs = compareReports(sampleImage(), PID_MAP, reports);
  assert.deepEqual(
    diffs.map((d) => [d.kind, d.pid, d.fd]),
    [['zombie-state', 200, 4]],
  );
  assert.match(diffs[0]!.message, /target is a zombie, not a live task/);
});

test('a zombie target with another exit status is refused', () => {
  const reports = faithfulReports(sampleImage());
  fdOf(reports, 300, 3).targetExitCode = 15; // killed by SIGTERM instead of exit 3
  const diffs = compareReports(sampleImage(), PID_MAP, reports);
  assert.deepEqual(
    diffs.map((d) => [d.kind, d.pid, d.fd]),
    [['exit-status', 300, 3]],
  );
  assert.match(diffs[0]!.message, /zombie exit status differs/);
});

test('ino classes: a split class and a merged class', () => {
  const split = faithfulReports(sampleImage());
  fdOf(split, 200, 4).ino = '123456'; // file 1 no longer to the same process as file 0
  const d1 = compareReports(sampleImage(), PID_MAP, split);
  assert.deepEqual(
    d1.map((d) => d.kind),
    ['ino-class'],
  );
  assert.match(d1[0]!.message, /task 100 fd 3, task 200 fd 4, task 300 fd 5 shared one process/);

  const merged = faithfulReports(sampleImage());
  const deadIno = fdOf(merged, 300, 6).ino;
  fdOf(merged, 100, 4).ino = deadIno; // two dead groups collapsed into one process
  for (const fd of [6, 7]) fdOf(merged, 100, fd).ino = deadIno;
  fdOf(merged, 200, 5).ino = deadIno;
  const d2 = compareReports(sampleImage(), PID_MAP, merged);
  assert.deepEqual(
    d2.map((d) => d.kind),
    ['ino-class'],
  );
  assert.match(d2[0]!.message, /share one process \(pidfs ino\) after restore but did not at dump/);
});

test('open-file classes: a dup that became two opens, two opens that became one file', () => {
  const split = faithfulReports(sampleImage());
  fdOf(split, 100, 7).fileClass = '5100:7';
  assert.deepEqual(kinds(split), ['file-class']);

  const merged = faithfulReports(sampleImage());
  fdOf(merged, 200, 4).fileClass = fdOf(merged, 100, 3).fileClass; // files 0 and 1 are one
  const d = compareReports(sampleImage(), PID_MAP, merged);
  assert.deepEqual(
    d.map((x) => x.kind),
    ['file-class'],
  );
  assert.match(
    d[0]!.message,
    /task 100 fd 3, task 200 fd 4, task 300 fd 5 share one open file description after restore/,
  );
});
