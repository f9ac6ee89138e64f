/**
 * Open strategies and install: exact flags (pidfd_open and /proc/self/fd re-open),
 * PIDFD_THREAD on helper threads of this process (which stay alive), external re-open
 * guarded by ino and boot id, dup3 install sharing one open file, the own-fd report.
 */
import { bootId } from '../../src/procfs/host.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { openPidfd, openExternal, installFile, finalizeCloexec } from '../../src/sys/open-files.js';
import { helperThreads, reserveThreads } from '../../src/sys/threads.js';
import { reportFds, fileClasses, withFileClasses } from '../../src/verify/report.js';
import {
  closeQuiet,
  kcmpFile,
  pidfsHandleIno,
  getCloexec,
  getStatusFlags,
  PIDFD_THREAD,
} from '../../native/index.js';
import { fdinfo, fdLink } from '../helpers/proc-view.js';

function sleeper(t: { after(fn: () => Promise<void>): void }): number {
  const child = spawn('sleep', ['1000'], { stdio: 'ignore' });
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await gone;
    }
  });
  return child.pid!;
}

test('openPidfd reproduces each flag combination exactly', (t) => {
  const pid = sleeper(t);
  for (const flags of [0o2, 0o4002, 0o100000, 0o100002, 0o104000, 0o100001]) {
    const fd = openPidfd(pid, flags);
    try {
      assert.equal(getStatusFlags(fd), flags, `flags 0${flags.toString(8)}`);
      assert.equal(fdinfo(process.pid, fd).pid, pid);
    } finally {
      closeQuiet(fd);
    }
  }
  assert.throws(() => openPidfd(pid, 0o100202), /cannot be reproduced/);
});

test('helper threads outlive activity; PIDFD_THREAD pidfds show their tids', async () => {
  const before = helperThreads();
  assert.ok(before.length >= 4, `Node has helper threads: ${before}`);
  await Promise.all(
    Array.from({ length: 20 }, () => import('node:fs/promises').then((f) => f.stat('/'))),
  );
  (globalThis as { gc?: () => void }).gc?.();
  await new Promise((r) => setTimeout(r, 100));
  const after = helperThreads();
  for (const tid of before) assert.ok(after.includes(tid), `thread ${tid} still alive`);
  const tids = await reserveThreads(after.length + 2);
  assert.equal(new Set(tids).size, after.length + 2, 'worker_threads added distinct threads');
  for (const tid of tids) {
    const fd = openPidfd(tid, 0o2 | PIDFD_THREAD);
    assert.equal(fdinfo(process.pid, fd).pid, tid);
    closeQuiet(fd);
  }
});

test('external re-open: same ino passes; other ino, boot or dead pid are named errors', (t) => {
  const pid = sleeper(t);
  const probe = openPidfd(pid, 0o2);
  const ino = pidfsHandleIno(probe);
  closeQuiet(probe);
  const fd = openExternal({ pid, ino, comm: 'sleep' }, 0o2, bootId());
  assert.equal(fdinfo(process.pid, fd).ino, ino);
  closeQuiet(fd);
  assert.throws(
    () => openExternal({ pid, ino: ino + 1n, comm: 'sleep' }, 0o2, bootId()),
    new RegExp(`external target sleep \\(pid ${pid}, ino ${ino + 1n}\\): gone, pid ${pid} is now`),
  );
  assert.throws(
    () => openExternal({ pid, ino, comm: 'sleep' }, 0o2, 'other-boot'),
    /the image is from boot other-boot/,
  );
  assert.throws(
    () => openExternal({ pid: 0x3ffffff0, ino, comm: 'x' }, 0o2, bootId()),
    /gone \(pidfd_open: ESRCH\)/,
  );
});

test('fileClasses: fds of one file share a class, a second open of the same target does not (kcmp)', (t) => {
  const pid = sleeper(t);
  const first = openPidfd(pid, 0o2);
  const numbers = [921, 922, 960];
  try {
    installFile(first, [921, 922]);
    installFile(openPidfd(pid, 0o2), [960]);
    const own = reportFds(1);
    const mine = own.fds.filter((f) => numbers.includes(f.fd));
    assert.equal(new Set(mine.map((f) => f.ino)).size, 1, 'one target, one ino');
    assert.ok(
      mine.every((f) => f.fileClass === ''),
      'a worker leaves the class to the coordinator',
    );
    const classes = fileClasses([own]);
    assert.deepEqual(
      numbers.map((fd) => classes.get(`${process.pid}:${fd}`)),
      [`${process.pid}:921`, `${process.pid}:921`, `${process.pid}:960`],
    );
  } finally {
    numbers.forEach(closeQuiet);
  }
});

test('install: several fds of one file share it; finalize sets exact cloexec; report sees it', (t) => {
  const pid = sleeper(t);
  const fd = openPidfd(pid, 0o4002);
  const numbers = [901, 902, 950];
  try {
    installFile(fd, numbers);
    assert.equal(fdLink(process.pid, fd), null, 'the original is closed');
    assert.equal(kcmpFile(process.pid, 901, process.pid, 950), 0);
    assert.ok(
      numbers.every((n) => getCloexec(n)),
      'cloexec until finalize',
    );
    finalizeCloexec([
      { fd: 901, cloexec: false },
      { fd: 902, cloexec: true },
      { fd: 950, cloexec: false },
    ]);
    assert.deepEqual(
      numbers.map((n) => getCloexec(n)),
      [false, true, false],
    );
    const own = reportFds(1);
    const report = withFileClasses(own, process.pid, fileClasses([own]));
    const mine = report.fds.filter((f) => numbers.includes(f.fd));
    assert.deepEqual(
      mine.map((f) => [f.fd, f.targetPid, f.flags, f.cloexec]),
      [
        [901, pid, 0o4002, false],
        [902, pid, 0o4002, true],
        [950, pid, 0o4002, false],
      ],
    );
    assert.deepEqual(new Set(mine.map((f) => f.fileClass)), new Set([`${process.pid}:901`]));
    // The kernel agrees: one open file description.
    for (const n of numbers) assert.equal(kcmpFile(process.pid, numbers[0]!, process.pid, n), 0);
  } finally {
    numbers.forEach(closeQuiet);
  }
});
