/**
 * The native layer against the real kernel: every wrapper of native/ is called on real
 * processes and its result is checked from the outside (/proc fd links and fdinfo, fstat,
 * kcmp). Children are started with posix_spawn and reaped through their pidfds in
 * t.after, also when a test fails. Features the kernel may lack are probed, not assumed.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import {
  existsSync,
  fstatSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SyscallError } from '../../src/errors.js';
import {
  MAX_FDS_PER_MESSAGE,
  O_CLOEXEC,
  O_NONBLOCK,
  PIDFD_INFO,
  PIDFD_NONBLOCK,
  PIDFD_THREAD,
  acceptSeqpacket,
  closeFd,
  closeQuiet,
  connectSeqpacket,
  dup3,
  dupAbove,
  getCloexec,
  getStatusFlags,
  kcmpFile,
  kernelRandom,
  listenSeqpacket,
  openPidfdByIno,
  peerCred,
  peerPidfd,
  pidfdGetInfo,
  pidfdGetfd,
  pidfdOpen,
  pidfdSendSignal,
  pidfsHandleIno,
  recvFds,
  sendFds,
  seqpacketPair,
  setCloexec,
  setStatusFlags,
  spawn,
  waitPidfd,
  WEXITED,
  WNOHANG,
  WNOWAIT,
} from '../../native/index.js';

const SIGKILL = 9;
const SIGTERM = 15;
const CLD_EXITED = 1;
const CLD_KILLED = 2;
const O_EXCL = 0o200;
const SLEEP = ['/usr/bin/sleep', '/bin/sleep'].find((p) => existsSync(p)) ?? '/bin/sleep';

// ---------------------------------------------------------------- helpers

/** Closes every fd registered with it when the test ends. */
function fdJar(t: TestContext): (fd: number) => number {
  const fds: number[] = [];
  t.after(() => fds.forEach((fd) => closeQuiet(fd)));
  return (fd) => {
    fds.push(fd);
    return fd;
  };
}

interface Child {
  pid: number;
  pidfd: number;
}

/**
 * posix_spawns a child and opens its pidfd at once (a zombie still has one). t.after
 * kills it if needed and reaps it through the pidfd.
 */
function startChild(
  t: TestContext,
  path: string,
  argv: string[],
  opts: { dup2?: [number, number][]; closeFrom?: number } = {},
): Child {
  const pid = spawn({ path, argv, ...opts });
  const pidfd = pidfdOpen(pid);
  t.after(() => {
    try {
      pidfdSendSignal(pidfd, SIGKILL);
    } catch {
      // already exited
    }
    try {
      waitPidfd(pidfd, WEXITED);
    } catch {
      // already reaped by the test
    }
    closeQuiet(pidfd);
  });
  return { pid, pidfd };
}

const sleeper = (t: TestContext, opts?: Parameters<typeof startChild>[3]): Child =>
  startChild(t, SLEEP, ['sleep', '1000'], opts);
const shell = (t: TestContext, script: string): Child =>
  startChild(t, '/bin/sh', ['sh', '-c', script]);

/** /proc/P/fdinfo/N as a map of its "key: value" lines. */
function fdinfo(fd: number, pid: number | 'self' = 'self'): Map<string, string> {
  const text = readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
  return new Map(
    text
      .split('\n')
      .filter((l) => l.includes(':'))
      .map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim()]),
  );
}

const fdinfoFlags = (fd: number): number => parseInt(fdinfo(fd).get('flags') ?? 'x', 8);
const fdinfoPid = (fd: number): number => Number(fdinfo(fd).get('Pid'));

function syscallError(fn: () => unknown): SyscallError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof SyscallError, `not a SyscallError: ${(err as Error)?.stack}`);
    assert.equal(err.code, 'PCR_ERR_SYSCALL');
    assert.ok(err.message.includes(err.syscall) && err.message.includes(err.errnoName));
    return err;
  }
  assert.fail('the call did not fail');
}

function expectErrno(fn: () => unknown, syscall: string, errnoName: string, errno?: number) {
  const err = syscallError(fn);
  assert.equal(err.syscall, syscall);
  assert.equal(err.errnoName, errnoName, err.message);
  if (errno !== undefined) assert.equal(err.errno, errno);
  return err;
}

/** Non-leader threads of this Node process (V8 and libuv start some). */
function otherThreads(): number[] {
  return readdirSync('/proc/self/task')
    .map(Number)
    .filter((tid) => tid !== process.pid);
}

// ---------------------------------------------------------------- probes

function probe(fn: () => void): string | null {
  try {
    fn();
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}

const selfProbeFd = pidfdOpen(process.pid);
const NO_GET_INFO = probe(() => pidfdGetInfo(selfProbeFd));
const NO_HANDLES = probe(() => closeFd(openPidfdByIno(pidfsHandleIno(selfProbeFd))));
const NO_GETFD = probe(() => closeFd(pidfdGetfd(selfProbeFd, selfProbeFd)));
closeFd(selfProbeFd);

// ---------------------------------------------------------------- pidfd_open

test('pidfdOpen of self: a cloexec O_RDWR pidfd whose fdinfo shows our pid', (t) => {
  const keep = fdJar(t);
  const fd = keep(pidfdOpen(process.pid));
  assert.equal(readlinkSync(`/proc/self/fd/${fd}`), 'anon_inode:[pidfd]');
  assert.equal(fdinfoPid(fd), process.pid);
  assert.equal(fdinfoFlags(fd), 0o2000002);
  assert.equal(getCloexec(fd), true);
  assert.equal(getStatusFlags(fd) & 0o3, 0o2);
});

test('pidfdOpen of a child, with PIDFD_NONBLOCK', (t) => {
  const keep = fdJar(t);
  const child = sleeper(t);
  const fd = keep(pidfdOpen(child.pid, PIDFD_NONBLOCK));
  assert.equal(fdinfoPid(fd), child.pid);
  assert.equal(fdinfoFlags(fd) & O_NONBLOCK, O_NONBLOCK);
  assert.equal(getStatusFlags(fd) & O_NONBLOCK, O_NONBLOCK);
  assert.equal(pidfsHandleIno(fd), pidfsHandleIno(child.pidfd), 'one process, one ino');
});

test('pidfdOpen of a reaped pid fails with ESRCH, naming the pid', (t) => {
  const child = shell(t, 'exit 0');
  waitPidfd(child.pidfd, WEXITED);
  const err = expectErrno(() => pidfdOpen(child.pid), 'pidfd_open', 'ESRCH', 3);
  assert.match(err.message, new RegExp(`pid ${child.pid}`));
  assert.equal(fdinfoPid(child.pidfd), -1, 'the old pidfd now shows Pid: -1');
});

test('pidfdOpen of a non-leader thread needs PIDFD_THREAD', (t) => {
  const tid = otherThreads()[0];
  if (tid === undefined) return t.skip('this process has no other thread');
  const keep = fdJar(t);
  expectErrno(() => pidfdOpen(tid), 'pidfd_open', 'ENOENT');
  const fd = keep(pidfdOpen(tid, PIDFD_THREAD));
  assert.equal(fdinfoPid(fd), tid);
  assert.equal(fdinfoFlags(fd) & O_EXCL, O_EXCL, 'PIDFD_THREAD shows as O_EXCL');
  const leaderThread = keep(pidfdOpen(process.pid, PIDFD_THREAD));
  const leader = keep(pidfdOpen(process.pid));
  assert.equal(pidfsHandleIno(leaderThread), pidfsHandleIno(leader));
  assert.notEqual(pidfsHandleIno(fd), pidfsHandleIno(leader), 'a thread has its own ino');
});

// ---------------------------------------------------------------- signals, wait, spawn

test('pidfdSendSignal kills the child; after the reap it is ESRCH', (t) => {
  const child = sleeper(t);
  pidfdSendSignal(child.pidfd, SIGTERM);
  const r = waitPidfd(child.pidfd, WEXITED);
  assert.deepEqual(r, { pid: child.pid, code: CLD_KILLED, status: SIGTERM });
  expectErrno(() => pidfdSendSignal(child.pidfd, 0), 'pidfd_send_signal', 'ESRCH');
});

test('spawn + waitPidfd give the exact wait status word for exits and signals', (t) => {
  const cases: [string, number, number][] = [
    ['exit 0', 0, CLD_EXITED],
    ['exit 7', 7 << 8, CLD_EXITED],
    ['exit 255', 255 << 8, CLD_EXITED],
    ['kill -TERM $$', SIGTERM, CLD_KILLED],
    ['kill -KILL $$', SIGKILL, CLD_KILLED],
    ['ulimit -c 0; kill -SEGV $$', 11, CLD_KILLED],
  ];
  for (const [script, status, code] of cases) {
    const child = shell(t, script);
    assert.deepEqual(waitPidfd(child.pidfd, WEXITED), { pid: child.pid, status, code }, script);
  }
});

test('waitPidfd: WNOHANG on a live child is null; a second wait is ECHILD', (t) => {
  const child = sleeper(t);
  assert.equal(waitPidfd(child.pidfd, WEXITED | WNOHANG), null);
  pidfdSendSignal(child.pidfd, SIGKILL);
  assert.equal(waitPidfd(child.pidfd, WEXITED)?.status, SIGKILL);
  expectErrno(() => waitPidfd(child.pidfd, WEXITED), 'waitid(P_PIDFD)', 'ECHILD');
});

test("spawn applies dup2 and closeFrom, seen in the child's /proc", (t) => {
  const keep = fdJar(t);
  const mine = keep(pidfdOpen(process.pid));
  // An inheritable (not cloexec) fd above 11: closeFrom must be what keeps it out.
  const leaky = keep(dupAbove(mine, 50));
  dup3(mine, leaky, false);
  const fdsOf = (pid: number) => readdirSync(`/proc/${pid}/fd`).map(Number);
  const plain = sleeper(t);
  assert.ok(fdsOf(plain.pid).includes(leaky), 'without closeFrom the fd is inherited');
  const child = sleeper(t, { dup2: [[mine, 10]], closeFrom: 11 });
  const fds = fdsOf(child.pid);
  assert.ok(fds.includes(10));
  assert.deepEqual(
    fds.filter((fd) => fd > 10),
    [],
  );
  assert.equal(readlinkSync(`/proc/${child.pid}/fd/10`), 'anon_inode:[pidfd]');
  assert.equal(fdinfo(10, child.pid).get('Pid'), String(process.pid));
  assert.equal(fdinfo(10, child.pid).get('flags'), '02', 'dup2 cleared close-on-exec');
  assert.equal(kcmpFile(child.pid, 10, process.pid, mine), 0);
});

test('spawn of a missing program is a SyscallError from posix_spawn', () => {
  expectErrno(() => spawn({ path: '/nonexistent/prog', argv: ['prog'] }), 'posix_spawn', 'ENOENT');
});

// ---------------------------------------------------------------- pidfd_getfd

test('pidfdGetfd copies a child fd: same open file, cloexec here', (t) => {
  if (NO_GETFD) return t.skip(`pidfd_getfd unavailable: ${NO_GETFD}`);
  const keep = fdJar(t);
  const mine = keep(pidfdOpen(process.pid));
  const child = sleeper(t, { dup2: [[mine, 10]] });
  const got = keep(pidfdGetfd(child.pidfd, 10));
  assert.equal(kcmpFile(process.pid, got, process.pid, mine), 0);
  assert.equal(kcmpFile(child.pid, 10, process.pid, got), 0);
  assert.equal(getCloexec(got), true);
  expectErrno(() => pidfdGetfd(child.pidfd, 900), 'pidfd_getfd', 'EBADF');
});

// ---------------------------------------------------------------- PIDFD_GET_INFO

test('pidfdGetInfo of a live child: pid, tgid, ppid, no exit', (t) => {
  if (NO_GET_INFO) return t.skip(`PIDFD_GET_INFO unavailable: ${NO_GET_INFO}`);
  const child = sleeper(t);
  const info = pidfdGetInfo(child.pidfd);
  assert.equal(info.hasPid, true);
  assert.equal(info.hasExit, false);
  assert.equal(info.pid, child.pid);
  assert.equal(info.tgid, child.pid);
  assert.equal(info.ppid, process.pid);
  assert.equal(info.ruid, process.getuid!());
});

test('pidfdGetInfo: EXIT appears only after the reap, with the exact status', (t) => {
  if (NO_GET_INFO) return t.skip(`PIDFD_GET_INFO unavailable: ${NO_GET_INFO}`);
  for (const [script, status] of [
    ['exit 3', 768],
    ['exit 7', 7 << 8],
    ['kill -TERM $$', SIGTERM],
    ['kill -KILL $$', SIGKILL],
  ] as const) {
    const child = shell(t, script);
    // Zombie: waitid with WNOWAIT leaves it unreaped; no exit info yet.
    assert.equal(waitPidfd(child.pidfd, WEXITED | WNOWAIT)?.status, status);
    const zombie = pidfdGetInfo(child.pidfd);
    assert.equal(zombie.hasExit, false, script);
    assert.equal(zombie.pid, child.pid);
    waitPidfd(child.pidfd, WEXITED);
    const reaped = pidfdGetInfo(child.pidfd);
    assert.equal(reaped.hasExit, true, script);
    assert.equal(reaped.exitCode, status, script);
    assert.equal((reaped.mask & PIDFD_INFO.EXIT) !== 0n, true);
    expectErrno(() => pidfdGetInfo(child.pidfd, PIDFD_INFO.PID), 'ioctl(PIDFD_GET_INFO)', 'ESRCH');
  }
});

// ---------------------------------------------------------------- kcmp, inos, handles

test('kcmpFile: dup and SCM_RIGHTS share one file; two opens do not', (t) => {
  const keep = fdJar(t);
  const child = sleeper(t);
  const a = keep(pidfdOpen(child.pid));
  const dup = keep(dupAbove(a, 100));
  const other = keep(pidfdOpen(child.pid));
  assert.equal(kcmpFile(process.pid, a, process.pid, dup), 0);
  const ab = kcmpFile(process.pid, a, process.pid, other);
  const ba = kcmpFile(process.pid, other, process.pid, a);
  assert.notEqual(ab, 0, 'a second pidfd_open is a new open file description');
  assert.equal(ab + ba, 3, 'kcmp orders the two files consistently (1 vs 2)');
  const [s1, s2] = seqpacketPair().map(keep) as [number, number];
  sendFds(s1, Buffer.from('x'), [a]);
  const got = recvFds(s2);
  assert.ok(got);
  got.fds.forEach(keep);
  assert.equal(kcmpFile(process.pid, got.fds[0]!, process.pid, a), 0);
  expectErrno(() => kcmpFile(process.pid, a, process.pid, 999), 'kcmp', 'EBADF');
});

test('pidfsHandleIno equals the fdinfo ino and st_ino', (t) => {
  const keep = fdJar(t);
  const child = sleeper(t);
  for (const fd of [keep(pidfdOpen(process.pid)), child.pidfd]) {
    const ino = pidfsHandleIno(fd);
    assert.equal(ino, BigInt(fdinfo(fd).get('ino') ?? '-1'));
    assert.equal(ino, fstatSync(fd, { bigint: true }).ino);
  }
  assert.notEqual(pidfsHandleIno(child.pidfd), pidfsHandleIno(keep(pidfdOpen(process.pid))));
});

test('openPidfdByIno: a fresh pidfd to a live or zombie process; ESTALE once reaped', (t) => {
  if (NO_HANDLES) return t.skip(`pidfs file handles unavailable: ${NO_HANDLES}`);
  const keep = fdJar(t);
  const child = shell(t, 'exit 5');
  const ino = pidfsHandleIno(child.pidfd);
  waitPidfd(child.pidfd, WEXITED | WNOWAIT); // a zombie now
  const fd = keep(openPidfdByIno(ino));
  assert.equal(pidfsHandleIno(fd), ino);
  assert.equal(fdinfoPid(fd), child.pid);
  assert.equal(getStatusFlags(fd) & 0o3, 0o2);
  assert.notEqual(kcmpFile(process.pid, fd, process.pid, child.pidfd), 0);
  waitPidfd(child.pidfd, WEXITED);
  expectErrno(() => openPidfdByIno(ino), 'open_by_handle_at', 'ESTALE');
  expectErrno(() => openPidfdByIno((1n << 63n) + 17n), 'open_by_handle_at', 'ESTALE');
  const live = sleeper(t);
  const again = keep(openPidfdByIno(pidfsHandleIno(live.pidfd)));
  assert.equal(fdinfoPid(again), live.pid);
});

// ---------------------------------------------------------------- fd calls

test('dup3, cloexec per fd, status flags per open file', (t) => {
  const keep = fdJar(t);
  const fd = keep(pidfdOpen(process.pid));
  // Reserve free numbers with F_DUPFD_CLOEXEC, then dup3 onto them.
  const n1 = keep(dupAbove(fd, 500));
  const n2 = keep(dupAbove(fd, 600));
  assert.ok(n1 >= 500 && n2 >= 600);
  assert.equal(getCloexec(n1), true);
  assert.equal(dup3(fd, n1, false), n1);
  assert.equal(getCloexec(n1), false);
  assert.equal(fdinfoFlags(n1) & O_CLOEXEC, 0);
  assert.equal(dup3(fd, n2, true), n2);
  assert.equal(getCloexec(n2), true);
  setCloexec(n2, false);
  assert.equal(getCloexec(n2), false);
  assert.equal(getCloexec(fd), true, 'cloexec is per fd');
  assert.equal(kcmpFile(process.pid, fd, process.pid, n1), 0);
  const flags = getStatusFlags(fd);
  setStatusFlags(fd, flags | O_NONBLOCK);
  assert.equal(getStatusFlags(n1) & O_NONBLOCK, O_NONBLOCK, 'status flags are per open file');
  assert.equal(fdinfoFlags(n2) & O_NONBLOCK, O_NONBLOCK);
  setStatusFlags(fd, flags | O_EXCL);
  assert.equal(getStatusFlags(fd) & O_EXCL, 0, 'F_SETFL cannot set O_EXCL (PIDFD_THREAD)');
  expectErrno(() => dup3(fd, fd, false), 'dup3', 'EINVAL');
  const gone = dupAbove(fd, 700);
  closeFd(gone);
  expectErrno(() => closeFd(gone), 'close', 'EBADF');
  expectErrno(() => getCloexec(gone), 'fcntl(F_GETFD)', 'EBADF');
});

// ---------------------------------------------------------------- SCM_RIGHTS

test('sendFds/recvFds carry a payload and several fds, received cloexec', (t) => {
  const keep = fdJar(t);
  const child = sleeper(t);
  const [a, b] = seqpacketPair().map(keep) as [number, number];
  assert.equal(recvFds(b), null, 'nothing queued');
  const sent = [keep(pidfdOpen(process.pid)), child.pidfd, keep(pidfdOpen(child.pid))];
  sendFds(a, Buffer.from('hello'), sent);
  const got = recvFds(b);
  assert.ok(got);
  got.fds.forEach(keep);
  assert.equal(got.payload.toString(), 'hello');
  assert.equal(got.fds.length, 3);
  got.fds.forEach((fd, i) => {
    assert.equal(kcmpFile(process.pid, fd, process.pid, sent[i]!), 0);
    assert.equal(getCloexec(fd), true);
  });
  assert.equal(fdinfoPid(got.fds[1]!), child.pid);
  sendFds(a, Buffer.from('no fds'), []);
  assert.deepEqual(recvFds(b), { payload: Buffer.from('no fds'), fds: [] });
  closeFd(a);
  assert.equal(recvFds(b)?.payload.length, 0, 'peer closed');
});

test('253 fds go in one message; 254 are refused', (t) => {
  const keep = fdJar(t);
  const [a, b] = seqpacketPair().map(keep) as [number, number];
  const fd = keep(pidfdOpen(process.pid));
  assert.equal(MAX_FDS_PER_MESSAGE, 253);
  sendFds(a, Buffer.from('x'), Array(253).fill(fd));
  const got = recvFds(b);
  assert.ok(got);
  got.fds.forEach(keep);
  assert.equal(got.fds.length, 253);
  assert.equal(new Set(got.fds).size, 253, 'each arrives as its own fd');
  assert.ok(got.fds.every((g) => kcmpFile(process.pid, g, process.pid, fd) === 0));
  assert.throws(() => sendFds(a, Buffer.from('x'), Array(254).fill(fd)), {
    code: 'PCR_ERR_INTERNAL',
  });
  assert.throws(() => sendFds(a, Buffer.alloc(0), [fd]), { code: 'PCR_ERR_INTERNAL' });
  assert.equal(recvFds(b), null, 'nothing was sent by the refused calls');
});

test('listen/connect/accept on a path; peerCred names the peer', (t) => {
  const keep = fdJar(t);
  const dir = mkdtempSync(join(tmpdir(), 'pcr-native-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'sock');
  const listener = keep(listenSeqpacket(path));
  assert.equal(acceptSeqpacket(listener), null, 'no connection pending');
  const client = keep(connectSeqpacket(path));
  const server = acceptSeqpacket(listener);
  assert.ok(server !== null);
  keep(server);
  const me = { pid: process.pid, uid: process.getuid!(), gid: process.getgid!() };
  assert.deepEqual(peerCred(server), me);
  assert.deepEqual(peerCred(client), me);
  const fd = keep(pidfdOpen(process.pid));
  const peer = keep(peerPidfd(server));
  assert.equal(pidfsHandleIno(peer), pidfsHandleIno(fd), 'SO_PEERPIDFD: a pidfd to us');
  sendFds(client, Buffer.from('hi'), [fd]);
  const got = recvFds(server);
  assert.ok(got);
  got.fds.forEach(keep);
  assert.equal(kcmpFile(process.pid, got.fds[0]!, process.pid, fd), 0);
  sendFds(client, Buffer.alloc(200, 1), []);
  expectErrno(() => recvFds(server, 100), 'recvmsg', 'EMSGSIZE'); // MSG_TRUNC
  expectErrno(() => connectSeqpacket(join(dir, 'absent')), 'connect', 'ENOENT');
  expectErrno(() => listenSeqpacket(path), 'bind/listen', 'EADDRINUSE');
  expectErrno(() => listenSeqpacket(join(dir, 'x'.repeat(120))), 'bind', 'ENAMETOOLONG');
});

test('kernelRandom: n fresh bytes from getrandom, the whole buffer filled', () => {
  const a = kernelRandom(16);
  assert.equal(a.length, 16);
  assert.notDeepEqual(a, kernelRandom(16));
  const big = kernelRandom(4096);
  // 256 zero bytes in a row: never, unless part of the buffer was left unfilled.
  for (let i = 0; i < big.length; i += 256) {
    assert.ok(big.subarray(i, i + 256).some(Boolean), `bytes ${i}… filled`);
  }
  assert.equal(kernelRandom(0).length, 0);
});
