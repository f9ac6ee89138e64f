/**
 * pidfd-cr dump failures: each gives its own PcrError code and exit status with a
 * message naming the thing at fault, leaves no file in the image directory, and leaves
 * the tree running and untraced. Also: the freeze is invisible to a parent's waitid,
 * and a task in group-stop stays stopped.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  accessSync,
  chmodSync,
  constants,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import {
  __WALL,
  closeFd,
  kill,
  pidfdOpen,
  pidfdSendSignal,
  ptraceDetach,
  ptraceInterrupt,
  ptraceSeize,
  spawn,
  waitpid,
  waitPidfd,
  WEXITED,
  WNOHANG,
  WNOWAIT,
  WSTOPPED,
} from '../../native/index.js';
import { PcrError, SyscallError } from '../../src/errors.js';
import { readStat } from '../../src/procfs/read.js';
import { frozenKcmp, kernelProbes } from '../../src/dump/read.js';
import { buildTree, describeImage, type BuiltTree } from '../../src/testing/index.js';
import { dumpToDir, dumpTree } from '../../src/dump/index.js';
import { imagePath, readImage } from '../../src/image/store.js';
import { alive } from '../fixtures/scenarios.js';
import { worldReadableCopy } from '../helpers/world-readable.js';
import {
  cli,
  filesIn,
  liveTasks,
  procState,
  tempDir,
  waitForState,
} from '../fixtures/dump-helpers.js';

const SIGSTOP = 19;
const SIGKILL = 9;
const WCONTINUED = 8;
const NO_SUCH_PID = 2 ** 22 + 1; // above the largest possible pid_max

function assertRunningUntraced(built: BuiltTree): void {
  for (const pid of liveTasks(built.expected)) {
    const { state, tracer } = procState(pid);
    assert.ok('RS'.includes(state), `task ${pid} is in state ${state}`);
    assert.equal(tracer, 0, `task ${pid} is traced by ${tracer}`);
  }
}

const hasCode = (code: string, message: RegExp) => (e: unknown) =>
  e instanceof PcrError && e.code === code && message.test(e.message);

/** A directory this process cannot write: mode 0555, or (root may write that) /proc/1/fdinfo. */
function unwritableDir(parent: string): string {
  const ro = join(parent, 'ro');
  mkdirSync(ro, 0o555);
  try {
    accessSync(ro, constants.W_OK);
  } catch {
    return ro;
  }
  return '/proc/1/fdinfo';
}

test('dump of a pid that does not exist: exit 3, no file', (t) => {
  const { dir, remove } = tempDir();
  t.after(remove);
  const r = cli(['dump', '-t', String(NO_SUCH_PID), '-D', dir]);
  assert.equal(r.status, 3);
  assert.equal(r.stderr, `pidfd-cr: no such process: ${NO_SUCH_PID} (/proc/${NO_SUCH_PID}/stat)\n`);
  assert.deepEqual(filesIn(dir), []);
});

test('dump into a missing, non-directory or unwritable DIR: exit 6, tree untouched', async (t) => {
  const built = await buildTree(alive);
  t.after(() => built.destroy());
  const { dir, remove } = tempDir();
  t.after(remove);
  const root = String(built.rootPid);

  const missing = join(dir, 'missing');
  let r = cli(['dump', '-t', root, '-D', missing]);
  assert.equal(r.status, 6);
  assert.equal(r.stderr, `pidfd-cr: image directory ${missing}: cannot use it: ENOENT\n`);
  assert.equal(existsSync(missing), false);

  const file = join(dir, 'a-file');
  writeFileSync(file, 'x');
  r = cli(['dump', '-t', root, '-D', file]);
  assert.equal(r.status, 6);
  assert.equal(r.stderr, `pidfd-cr: image directory ${file}: not a directory (ENOTDIR)\n`);

  const unwritable = unwritableDir(dir);
  r = cli(['dump', '-t', root, '-D', unwritable]);
  assert.equal(r.status, 6);
  assert.equal(r.stderr, `pidfd-cr: image directory ${unwritable}: not writable: EACCES\n`);
  assert.equal(existsSync(imagePath(unwritable)), false);
  assert.deepEqual(filesIn(dir), ['a-file', 'ro']);
  assertRunningUntraced(built);
});

test('dump over an existing image: exit 7 without --force, replaced with it', async (t) => {
  const built = await buildTree(alive);
  t.after(() => built.destroy());
  const { dir, remove } = tempDir();
  t.after(remove);
  const root = String(built.rootPid);
  assert.equal(cli(['dump', '-t', root, '-D', dir]).status, 0);
  const before = readFileSync(imagePath(dir));

  const r = cli(['dump', '-t', root, '-D', dir]);
  assert.equal(r.status, 7);
  assert.equal(
    r.stderr,
    `pidfd-cr: ${imagePath(dir)} already exists (use --force to replace it)\n`,
  );
  assert.deepEqual(readFileSync(imagePath(dir)), before);
  assert.deepEqual(filesIn(dir), ['pidfd-cr.img']);
  assertRunningUntraced(built);

  const forced = cli(['dump', '-t', root, '-D', dir, '--force']);
  assert.equal(forced.status, 0, forced.stderr);
  assert.deepEqual(filesIn(dir), ['pidfd-cr.img']);
  assert.notDeepEqual(readFileSync(imagePath(dir)), before); // a new dump time at least
  assert.deepEqual(describeImage(readImage(dir)), built.expected);
});

test('dump with bad arguments: exit 2 and a message naming the argument', (t) => {
  const { dir, remove } = tempDir();
  t.after(remove);
  const cases: Array<[string[], RegExp]> = [
    [['dump', '-D', dir], /dump: -t PID \(a pid > 0\) is required/],
    [['dump', '-t', 'abc', '-D', dir], /dump: --tree must be a positive integer, got 'abc'/],
    [['dump', '-t', '0', '-D', dir], /dump: -t PID \(a pid > 0\) is required/],
    [['dump', '-t', '1'], /dump: -D DIR is required/],
    [['dump', '-t', '1', '-D', dir, '--bogus'], /dump: Unknown option '--bogus'/],
    [
      ['dump', '-t', '99999999999999999999999', '-D', dir],
      /dump: --tree is too large, got '99999999999999999999999'/,
    ],
  ];
  for (const [args, message] of cases) {
    const r = cli(args);
    assert.equal(r.status, 2, args.join(' '));
    assert.match(r.stderr, message);
    assert.doesNotMatch(r.stderr, /\n\s+at /); // no stack trace
  }
  assert.deepEqual(filesIn(dir), []);
  const help = cli(['dump', '--help']);
  assert.equal(help.status, 0);
  assert.match(
    help.stdout,
    /^usage: pidfd-cr dump -t PID -D DIR \[--leave-stopped \| --kill\] \[--force\]/,
  );
});

test('dump of a thread id: exit 2 naming the process it belongs to', (t) => {
  const { dir, remove } = tempDir();
  t.after(remove);
  // This test's own Node process has helper threads; any one that is not the leader.
  const tid = readdirSync('/proc/self/task')
    .map(Number)
    .find((x) => x !== process.pid);
  assert.ok(tid !== undefined, 'node runs threads');
  const r = cli(['dump', '-t', String(tid), '-D', dir]);
  assert.equal(r.status, 2);
  assert.equal(
    r.stderr,
    `pidfd-cr: dump: ${tid} is a thread of process ${process.pid}, not a process (dump -t ${process.pid})\n`,
  );
  assert.deepEqual(filesIn(dir), []);
});

test('dump of a kernel thread: exit 4 saying that it is one', (t) => {
  const kthread = readdirSync('/proc')
    .filter((n) => /^[0-9]+$/.test(n))
    .map(Number)
    .find((pid) => {
      try {
        return (readStat(pid).flags & 0x00200000) !== 0; // PF_KTHREAD
      } catch {
        return false;
      }
    });
  if (kthread === undefined) {
    t.skip('no kernel thread visible in this pid namespace');
    return;
  }
  const { dir, remove } = tempDir();
  t.after(remove);
  const r = cli(['dump', '-t', String(kthread), '-D', dir]);
  assert.equal(r.status, 4, r.stderr);
  assert.equal(
    r.stderr,
    `pidfd-cr: task ${kthread} is a kernel thread: nobody may ptrace it, and it holds no pidfds\n`,
  );
  assert.deepEqual(filesIn(dir), []);
});

test('dump of a tree with a task already traced: exit 4 naming it and its tracer', async (t) => {
  const built = await buildTree(alive);
  t.after(() => built.destroy());
  const { dir, remove } = tempDir();
  t.after(remove);
  const a = built.pids.get('a')!;
  ptraceSeize(a); // this test process becomes a's tracer
  let r;
  try {
    r = cli(['dump', '-t', String(built.rootPid), '-D', dir]);
  } finally {
    ptraceInterrupt(a);
    waitpid(a, __WALL);
    ptraceDetach(a);
  }
  assert.equal(r.status, 4);
  assert.equal(
    r.stderr,
    `pidfd-cr: task ${a} is already traced by process ${process.pid}; a task has one tracer at a time\n`,
  );
  assert.deepEqual(filesIn(dir), []);
  assertRunningUntraced(built);
});

test('dump without ptrace access (run as nobody): exit 4 explaining the rule', async (t) => {
  if (process.getuid?.() !== 0 || !existsSync('/usr/bin/setpriv')) {
    t.skip('needs root to drop to another uid with setpriv');
    return;
  }
  const built = await buildTree(alive);
  t.after(() => built.destroy());
  const { dir, remove } = tempDir();
  t.after(remove);
  chmodSync(dir, 0o777);
  const { cli, remove: removeCopy } = worldReadableCopy();
  t.after(removeCopy);
  const r = spawnSync(
    '/usr/bin/setpriv',
    [
      '--reuid=65534',
      '--regid=65534',
      '--clear-groups',
      process.execPath,
      cli,
      'dump',
      '-t',
      String(built.rootPid),
      '-D',
      dir,
    ],
    { encoding: 'utf8', cwd: '/' },
  );
  assert.equal(r.status, 4, r.stderr);
  assert.equal(
    r.stderr,
    `pidfd-cr: cannot ptrace task ${built.rootPid}: EPERM; dumping needs ptrace access to ` +
      `every task (same uid and a dumpable process, or CAP_SYS_PTRACE)\n`,
  );
  assert.deepEqual(filesIn(dir), []);
  assertRunningUntraced(built);
});

test('a task killed while the tree is frozen: PCR_ERR_TASK_EXITED, no image, others run', async (t) => {
  const built = await buildTree(alive);
  t.after(() => built.destroy());
  const { dir, remove } = tempDir();
  t.after(remove);
  const a = built.pids.get('a')!;
  await assert.rejects(
    dumpToDir(built.rootPid, dir, { onFrozen: () => kill(a, SIGKILL) }),
    hasCode('PCR_ERR_TASK_EXITED', new RegExp(`^task ${a} exited while it was being dumped$`)),
  );
  assert.deepEqual(filesIn(dir), []);
  const root = procState(built.rootPid);
  assert.ok('RS'.includes(root.state));
  assert.equal(root.tracer, 0);
  assert.equal(await waitForState(a, 'Z'), 'Z'); // a zombie of its parent, no longer traced
  assert.equal(procState(a).tracer, 0);
});

test('a holder killed between the fdinfo read and a probe or kcmp: PCR_ERR_TASK_EXITED naming it', async (t) => {
  // The race CI met: the fd table of a SIGKILLed task goes before it shows as a zombie.
  const zombie = sleeper(t);
  kill(zombie.pid, SIGKILL);
  waitPidfd(zombie.fd, WEXITED | WNOWAIT); // a zombie now, not reaped
  const reaped = spawn({ path: '/bin/sleep', argv: ['sleep', '60'], closeFrom: 3 });
  kill(reaped, SIGKILL);
  waitpid(reaped, 0);
  for (const pid of [zombie.pid, reaped]) {
    const exited = hasCode(
      'PCR_ERR_TASK_EXITED',
      new RegExp(`^task ${pid} exited while it was being dumped$`),
    );
    assert.throws(() => kernelProbes.fileFlags!(pid, 0), exited);
    assert.throws(() => kernelProbes.dead(pid, 0), exited);
    assert.throws(() => frozenKcmp(process.pid, 0, pid, 0), exited);
  }
  // A live holder's bad fd stays the syscall's own error.
  assert.throws(
    () => frozenKcmp(process.pid, 0, process.pid, 9999),
    (e: unknown) => e instanceof SyscallError && e.syscall === 'kcmp' && e.errnoName === 'EBADF',
  );
});

test('dumping a tree that holds the dumper itself is refused before anything is seized', async () => {
  await assert.rejects(
    dumpTree(process.pid),
    hasCode('PCR_ERR_USAGE', /the tree contains the dumper itself/),
  );
  assert.equal(procState(process.pid).tracer, 0);
});

test('dumping a zombie: PCR_ERR_TASK_EXITED', async (t) => {
  const pid = spawn({ path: '/bin/sh', argv: ['sh', '-c', 'exit 0'] });
  const fd = pidfdOpen(pid);
  t.after(() => {
    waitPidfd(fd);
    closeFd(fd);
  });
  waitPidfd(fd, WEXITED | WNOWAIT);
  await assert.rejects(dumpTree(pid), hasCode('PCR_ERR_TASK_EXITED', /is a zombie/));
});

/**
 * A `sleep 60` child (posix_spawn) and a pidfd to it; after the test it is SIGKILLed (if
 * still there) and reaped, and the pidfd closed.
 */
function sleeper(t: { after(fn: () => unknown): void }): { pid: number; fd: number } {
  const pid = spawn({ path: '/bin/sleep', argv: ['sleep', '60'], closeFrom: 3 });
  const fd = pidfdOpen(pid);
  t.after(() => {
    pidfdSendSignalQuiet(fd, SIGKILL);
    try {
      waitPidfd(fd);
    } catch {
      // the test reaped it (ECHILD)
    }
    closeFd(fd);
  });
  return { pid, fd };
}

function pidfdSendSignalQuiet(fd: number, sig: number): void {
  try {
    pidfdSendSignal(fd, sig);
  } catch {
    // reaped already
  }
}

test("the freeze is invisible to the parent's waitid; --leave-stopped is not", async (t) => {
  const { pid, fd } = sleeper(t);
  const changes = () => waitPidfd(fd, WSTOPPED | WCONTINUED | WNOHANG);
  const image = await dumpTree(pid);
  assert.equal(image.tasks.length, 1);
  assert.deepEqual(image.tasks[0]?.fds, []);
  assert.equal(changes(), null);
  assert.ok('RS'.includes(procState(pid).state));
  assert.equal(procState(pid).tracer, 0);

  await dumpTree(pid, { leaveStopped: true });
  assert.equal(await waitForState(pid, 'T'), 'T');
  assert.equal(changes()?.status, (SIGSTOP << 8) | 0x7f);
});

test('a task in group-stop is dumped as stopped and stays stopped', async (t) => {
  const built = await buildTree(alive);
  t.after(() => built.destroy());
  const a = built.pids.get('a')!;
  kill(a, SIGSTOP);
  assert.equal(await waitForState(a, 'T'), 'T');
  const image = await dumpTree(built.rootPid);
  const task = image.tasks.find((x) => x.pid === a);
  assert.equal(task?.state, 'stopped');
  assert.equal(task?.procState, 'T');
  const expected = structuredClone(built.expected);
  expected.tasks.find((x) => x.pid === a)!.state = 'stopped';
  assert.deepEqual(describeImage(image), expected);
  // Detached from group-stop, the task runs for a moment to re-enter the stop.
  assert.equal(await waitForState(a, 'T'), 'T');
  assert.equal(procState(a).tracer, 0);
  const root = procState(built.rootPid);
  assert.ok('RS'.includes(root.state));
});

test('signals sent while the tree is frozen wait and are delivered after it, none lost', async (t) => {
  const SIGTERM = 15;
  const SIGCONT = 18;
  const term = sleeper(t);
  const stop = sleeper(t);
  const termImage = await dumpTree(term.pid, {
    onFrozen: () => kill(term.pid, SIGTERM),
  });
  assert.equal(termImage.tasks[0]?.state, 'running', 'read while frozen: still running');
  const ended = waitPidfd(term.fd, WEXITED);
  assert.deepEqual([ended?.code, ended?.status], [2, SIGTERM], 'killed by the SIGTERM');

  await dumpTree(stop.pid, { onFrozen: () => kill(stop.pid, SIGSTOP) });
  assert.equal(await waitForState(stop.pid, 'T'), 'T', 'the SIGSTOP took effect after the thaw');
  assert.equal(procState(stop.pid).tracer, 0);
  assert.equal(waitPidfd(stop.fd, WSTOPPED | WNOHANG)?.status, (SIGSTOP << 8) | 0x7f);
  kill(stop.pid, SIGCONT);
  assert.equal(await waitForState(stop.pid, 'S'), 'S');
});

test('a SIGSTOP racing the seize: the task ends stopped whichever way the race went', async (t) => {
  for (let i = 0; i < 5; i++) {
    const { pid } = sleeper(t);
    kill(pid, SIGSTOP);
    const image = await dumpTree(pid);
    assert.ok(['running', 'stopped'].includes(image.tasks[0]!.state));
    assert.equal(await waitForState(pid, 'T'), 'T', `round ${i}: stopped after the dump`);
    assert.equal(procState(pid).tracer, 0);
  }
});
