import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readlinkSync } from 'node:fs';
import {
  bootId,
  kernelRelease,
  readChildren,
  readCmdline,
  readComm,
  readPidfds,
  readStat,
  readStatus,
  readTids,
} from '../../src/procfs/index.js';
import {
  closeFd,
  pidfdOpen,
  PIDFD_NONBLOCK,
  PIDFD_THREAD,
  setCloexec,
  spawn,
  waitPidfd,
  dup3,
  pidfsHandleIno,
} from '../../native/index.js';
import { PcrError } from '../../src/errors.js';

const self = process.pid;

test('readPidfds lists this process’s pidfds with flags, cloexec, ino and target', (t) => {
  const child = spawn({ path: '/bin/sleep', argv: ['sleep', '30'] });
  const reaper = pidfdOpen(child);
  const a = pidfdOpen(child, PIDFD_NONBLOCK);
  const b = pidfdOpen(self, PIDFD_THREAD);
  const c = dup3(a, 900, false);
  t.after(() => {
    [a, b, c].forEach(closeFd);
    process.kill(child, 'SIGKILL');
    waitPidfd(reaper); // not `a`: waitid on a PIDFD_NONBLOCK pidfd gives EAGAIN
    closeFd(reaper);
  });
  setCloexec(a, false);
  const got = readPidfds(self);
  const byFd = new Map(got.map((p) => [p.fd, p]));
  assert.deepEqual(byFd.get(a), {
    fd: a,
    flags: 0o4002,
    cloexec: false,
    ino: pidfsHandleIno(a),
    pid: child,
    nsPids: [child],
  });
  assert.equal(byFd.get(b)?.flags, 0o202);
  assert.equal(byFd.get(b)?.cloexec, true);
  assert.equal(byFd.get(b)?.pid, self);
  assert.equal(byFd.get(c)?.ino, byFd.get(a)?.ino);
  assert.equal(byFd.get(c)?.cloexec, false);
  for (const p of got) assert.equal(readlinkSync(`/proc/self/fd/${p.fd}`), 'anon_inode:[pidfd]');
  assert.deepEqual(
    got.map((p) => p.fd),
    [...got.map((p) => p.fd)].sort((x, y) => x - y),
  );
});

test('readPidfds shows -1 once the target is reaped', (t) => {
  const child = spawn({ path: '/bin/sh', argv: ['sh', '-c', 'exit 3'] });
  const fd = pidfdOpen(child);
  t.after(() => closeFd(fd));
  assert.equal(waitPidfd(fd)?.status, 3 << 8);
  const entry = readPidfds(self).find((p) => p.fd === fd);
  assert.equal(entry?.pid, -1);
});

test('stat, status, tids, children, cmdline and comm of this process', (t) => {
  const child = spawn({ path: '/bin/sleep', argv: ['sleep', '30'] });
  const fd = pidfdOpen(child);
  t.after(() => {
    process.kill(child, 'SIGKILL');
    waitPidfd(fd);
    closeFd(fd);
  });
  const st = readStat(self);
  assert.equal(st.pid, self);
  assert.equal(st.ppid, process.ppid);
  const status = readStatus(self);
  assert.equal(status.tgid, self);
  assert.equal(status.nsPids.at(0), self);
  const tids = readTids(self);
  assert.equal(tids[0], self);
  assert.equal(tids.length, st.numThreads);
  assert.ok(readChildren(self).includes(child));
  assert.deepEqual(readCmdline(self).slice(1), [...process.execArgv, ...process.argv.slice(1)]);
  assert.equal(readComm(self), st.comm);
});

test('a zombie shows state Z and its wait status in stat field 52', (t) => {
  const child = spawn({ path: '/bin/sh', argv: ['sh', '-c', 'exit 7'] });
  const fd = pidfdOpen(child);
  t.after(() => {
    waitPidfd(fd);
    closeFd(fd);
  });
  // Not reaped: wait for the exit without consuming it (WNOWAIT).
  waitPidfd(fd, 4 | 0x01000000);
  const st = readStat(child);
  assert.equal(st.state, 'Z');
  assert.equal(st.exitCode, 7 << 8);
  assert.deepEqual(readPidfds(child), []);
});

test('a missing pid is PCR_ERR_NO_SUCH_PROCESS', () => {
  const gone = 2 ** 22 + 1; // above any pid_max
  assert.throws(
    () => readStat(gone),
    (e: unknown) => e instanceof PcrError && e.code === 'PCR_ERR_NO_SUCH_PROCESS',
  );
  assert.throws(() => readPidfds(gone), /no such process/);
});

test('boot id and kernel release are read from /proc/sys', () => {
  assert.match(bootId(), /^[0-9a-f-]{36}$/);
  assert.match(kernelRelease(), /^\d+\.\d+/);
});
