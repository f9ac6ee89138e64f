/**
 * spawnClean / spawnWorker: a real Node child whose reserved fd numbers (low, stdio and
 * high) are /dev/null placeholders seen from /proc, whose own fds never land on them,
 * and which inherits none of our non-cloexec fds.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnClean } from '../../src/sys/spawn-clean.js';
import { workerEnv } from '../../src/launch/spawn-worker.js';
import { decodeIdentity, WORKER_ENV } from '../../src/protocol/identity.js';
import {
  pidfdOpen,
  pidfdSendSignal,
  waitPidfd,
  closeQuiet,
  dup3,
  openPath,
  O_CLOEXEC,
  WEXITED,
} from '../../native/index.js';
import { fdLink, fdNumbers } from '../helpers/proc-view.js';

/** A Node child that opens a few fds of its own (a server socket, a file) and waits. */
const PROBE = `
require('node:net').createServer().listen(0);
require('node:fs').openSync('/proc/self/status', 'r');
setInterval(() => {}, 1000);
`;

async function withChild(reserve: number[], run: (pid: number) => void | Promise<void>) {
  const pid = spawnClean({
    path: process.execPath,
    argv: [process.execPath, '-e', PROBE],
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
    stdio: [null, null, 2],
    reserve,
  });
  const pidfd = pidfdOpen(pid);
  try {
    // Wait until the probe ran: it opened its own /proc/self/status (at most 30 s).
    const ran = (): boolean => fdNumbers(pid).some((fd) => fdLink(pid, fd)?.endsWith('/status'));
    for (let i = 0; i < 3000 && !ran(); i++) await new Promise((r) => setTimeout(r, 10));
    assert.ok(ran(), `probe ${pid} did not start within 30 s`);
    await run(pid);
  } finally {
    pidfdSendSignal(pidfd, 9);
    waitPidfd(pidfd, WEXITED);
    closeQuiet(pidfd);
  }
}

test('without reservation Node takes fd 3 itself (control)', async () => {
  await withChild([], (pid) => {
    assert.notEqual(fdLink(pid, 3), null);
    assert.notEqual(fdLink(pid, 3), '/dev/null');
  });
});

test('reserved fds 0, 3, 4, 5 and 1000 are /dev/null placeholders; Node uses others', async () => {
  const reserve = [0, 3, 4, 5, 1000];
  await withChild(reserve, (pid) => {
    for (const fd of reserve) assert.equal(fdLink(pid, fd), '/dev/null', `fd ${fd}`);
    const others = fdNumbers(pid).filter((fd) => !reserve.includes(fd) && fd > 2);
    const kinds = others.map((fd) => fdLink(pid, fd) ?? '');
    assert.ok(kinds.includes('anon_inode:[eventpoll]'), `Node's epoll fd elsewhere: ${kinds}`);
    assert.ok(
      kinds.some((k) => k.startsWith('socket:')),
      `its server socket elsewhere: ${kinds}`,
    );
  });
});

test('a non-cloexec fd of ours is not inherited; stderr is', async () => {
  const tmp = openPath('/proc/self/status', O_CLOEXEC);
  dup3(tmp, 777, false);
  try {
    await withChild([3], (pid) => {
      assert.equal(fdLink(pid, 777), null);
      assert.equal(fdLink(pid, 2), fdLink(process.pid, 2));
    });
  } finally {
    closeQuiet(777);
    closeQuiet(tmp);
  }
});

test('worker environment: identity, no start-up-costly variables', () => {
  const env = workerEnv({
    dumpedPid: 42,
    rundir: '/tmp/x',
    reservedFds: [5, 3, 5, 2],
    stderrFd: 2,
    trace: true,
    env: { PATH: '/bin', NODE_OPTIONS: '--inspect', NODE_EXTRA_CA_CERTS: '/c', KEEP: '1' },
  });
  assert.equal(env.NODE_OPTIONS, undefined);
  assert.equal(env.NODE_EXTRA_CA_CERTS, undefined);
  assert.equal(env.KEEP, '1');
  const id = decodeIdentity(env[WORKER_ENV]);
  assert.deepEqual(id.reservedFds, [2, 3, 5]);
  assert.equal(id.spawnerPid, process.pid);
  assert.equal(id.stderrUsable, false, 'fd 2 is one of the task fds');
});

test('an fd number above the open file limit is refused by name before spawning', () => {
  assert.throws(
    () =>
      spawnClean({
        path: '/bin/true',
        argv: ['true'],
        env: {},
        stdio: [null, null, null],
        reserve: [3, 1 << 30],
      }),
    /fd 1073741824 cannot be reserved: the open file limit \(RLIMIT_NOFILE\) is \d+/,
  );
});
