/**
 * Hand-off (docs/restore.md "Hand-off"), on real processes, checked from outside through
 * /proc: `--exec` of a non-Node program (a C program compiled here with the documented
 * helper examples/pidfd-cr-cloexec.c) with and without -d, `--handoff-socket` to a host
 * in this test, and the faults: a program that does not exist or cannot be exec'd, a
 * socket nobody listens on, a host that leaves mid-hand-off. Nothing may be left.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import {
  chmodSync,
  existsSync,
  readFileSync,
  readdirSync,
  realpathSync,
  readlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { writeImage } from '../../src/image/store.js';
import type { Image } from '../../src/model/image.js';
import type { TreeSpec } from '../../src/testing/spec.js';
import {
  acceptSeqpacket,
  closeQuiet,
  listenSeqpacket,
  recvFds,
  pidfdGetInfo,
  PIDFD_INFO,
} from '../../native/index.js';
import { decodeHandoffMessage } from '../../src/protocol/handoff.js';
import { restoreImage } from '../../src/restore/restore-image.js';
import type { PcrError } from '../../src/errors.js';
import { handoffTree, threadLive } from '../fixtures/scenarios.js';
import { CLI, cli } from '../fixtures/dump-helpers.js';
import { buildAndDump, killAll, waitGone } from '../helpers/restore-run.js';
import { exitStatusThroughCopy } from '../helpers/restored-view.js';
import {
  fdNumbers,
  settledFdNumbers,
  fdinfo,
  fileFlags,
  parentOf,
  procState,
  exitCodeField,
} from '../helpers/proc-view.js';

const O_CLOEXEC = 0o2000000;
const EXAMPLE_C = fileURLToPath(new URL('../../../examples/pidfd-cr-cloexec.c', import.meta.url));

const spec = handoffTree();

/**
 * The host's program: marks `<argv[1]>.started`, waits for SIGUSR1 (so the test sees
 * the state execve left), calls the documented helper, writes how many fds it fixed to
 * `<argv[1]>.fixed`, then sleeps until killed.
 */
const PROGRAM_C = `
#include <signal.h>
#include <stdio.h>
#include <unistd.h>
#include <fcntl.h>
#include "${EXAMPLE_C}"
static void mark(const char *base, const char *what, int n) {
  char p[4096]; snprintf(p, sizeof p, "%s.%s", base, what);
  char t[4096]; snprintf(t, sizeof t, "%s.tmp", p);
  FILE *f = fopen(t, "we"); if (!f) _exit(20); fprintf(f, "%d\\n", n); fclose(f);
  if (rename(t, p) != 0) _exit(21);
}
static void on_usr1(int s) { (void)s; }
int main(int argc, char **argv) {
  if (argc < 2) return 2;
  sigset_t usr1, old; sigemptyset(&usr1); sigaddset(&usr1, SIGUSR1);
  sigprocmask(SIG_BLOCK, &usr1, &old);
  signal(SIGUSR1, on_usr1);
  mark(argv[1], "started", 0);
  sigsuspend(&old);
  int n = pidfd_cr_restore_cloexec();
  mark(argv[1], "fixed", n);
  for (;;) pause();
}
`;

function compileProgram(dir: string): string {
  const src = join(dir, 'host-prog.c');
  const bin = join(dir, 'host-prog');
  writeFileSync(src, PROGRAM_C);
  const r = spawnSync('cc', ['-O2', '-Wall', '-Werror', '-Wno-format-truncation', '-o', bin, src], {
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, `cc: ${r.stderr}`);
  return bin;
}

async function waitFile(path: string, limitMs = 20_000): Promise<string> {
  const end = Date.now() + limitMs;
  while (!existsSync(path)) {
    if (Date.now() > end) throw new Error(`${path} did not appear`);
    await sleep(20);
  }
  return readFileSync(path, 'utf8');
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI to its end (TMPDIR = dir, so its run directory would be left there). */
async function runCli(args: string[], dir: string): Promise<Run> {
  const child = spawn(process.execPath, [CLI, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, TMPDIR: dir },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, stdout, stderr };
}

const restoredOf = (map: Record<string, number>, dumped: number): number => {
  const r = map[String(dumped)];
  assert.ok(r !== undefined, `task ${dumped} in the pid map`);
  return r;
};

/**
 * `restore -D dir --pid-map … -d --exec [argv]`; every restored process (the tree the
 * command left running) is SIGKILLed and awaited when the test ends.
 */
async function restoreDetached(t: TestContext, dir: string, argv: string[]) {
  const mapPath = join(dir, 'pids.json');
  const everyone: number[] = [];
  t.after(() => killAll(everyone));
  const run = await runCli(
    ['restore', '-D', dir, '--pid-map', mapPath, '-d', '--exec', JSON.stringify(argv)],
    dir,
  );
  const map = JSON.parse(readFileSync(mapPath, 'utf8')) as Record<string, number>;
  everyone.push(...Object.values(map));
  return { run, map };
}

const liveTasks = (image: Image) => image.tasks.filter((t) => t.state !== 'zombie');

/** No run directory (pcr-*) left in `dir`: only the files the test made. */
function assertNoRundir(dir: string): void {
  const left = readdirSync(dir).filter((f) => f.startsWith('pcr-'));
  assert.deepEqual(left, [], 'no run directory left');
}

test('--exec -d: a C program per task holds exactly its pidfds at the dumped numbers, flags and targets; the helper puts FD_CLOEXEC back', async (t) => {
  const { image, dir } = await buildAndDump(t, spec);
  writeImage(dir, image);
  const prog = compileProgram(dir);
  const { run, map } = await restoreDetached(t, dir, [prog, join(dir, 'task-{dumped_pid}-{pid}')]);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, /^verification: OK/m);
  assert.match(run.stdout, /^detached: every task runs its --exec program \(root pid \d+\)$/m);
  assert.equal(run.stderr, '');
  // Nothing of the coordinator is left: it exited, its run directory and guard are gone.
  assertNoRundir(dir);

  const files = new Map(image.files.map((f) => [f.id, f]));
  const targets = new Map(image.targets.map((x) => [x.ino, x]));
  for (const task of liveTasks(image)) {
    const pid = restoredOf(map, task.pid);
    const base = join(dir, `task-${task.pid}-${pid}`);
    await waitFile(`${base}.started`);
    const name = `task ${task.pid} (pid ${pid})`;
    assert.equal(readlinkSync(`/proc/${pid}/exe`), prog, `${name} runs the program`);
    if (task.pid !== image.rootPid)
      assert.equal(parentOf(pid), restoredOf(map, task.ppid), `${name} keeps its parent`);
    // Nothing else open: fds 0-2 and the dumped pidfds.
    const want = [0, 1, 2, ...task.fds.map((f) => f.fd)].sort((a, b) => a - b);
    assert.deepEqual(fdNumbers(pid), want, `${name}: open fds`);
    const env = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
    const cloexecFds = task.fds.filter((f) => f.cloexec).map((f) => f.fd);
    assert.ok(
      env.includes(`PIDFD_CR_CLOEXEC_FDS=${cloexecFds.join(',')}`),
      `${name}: PIDFD_CR_CLOEXEC_FDS=${cloexecFds.join(',')} in ${env.filter((e) => e.startsWith('PIDFD_CR')).join(' ')}`,
    );
    assert.ok(env.includes(`PIDFD_CR_FDS=${task.fds.map((f) => f.fd).join(',')}`));
    assert.ok(env.includes(`PIDFD_CR_DUMPED_PID=${task.pid}`));
    assert.ok(!env.some((e) => e.startsWith('PCR_WORKER=')), 'no worker identity left');
    for (const f of task.fds) {
      const where = `${name} fd ${f.fd}`;
      assert.equal(readlinkSync(`/proc/${pid}/fd/${f.fd}`), 'anon_inode:[pidfd]', where);
      const file = files.get(f.fileId)!;
      const target = targets.get(file.ino)!;
      const info = fdinfo(pid, f.fd);
      const ownCloexec = fileFlags(pid, f.fd) & O_CLOEXEC;
      assert.equal((info.flags & ~O_CLOEXEC) | ownCloexec, file.flags, `${where}: flags`);
      // Every pidfd survived execve: none is close-on-exec now (unless its file is).
      assert.equal(info.flags & O_CLOEXEC, ownCloexec, `${where}: not close-on-exec yet`);
      if (target.kind === 'dead') {
        assert.equal(info.pid, -1, `${where}: dead target`);
        assert.equal(exitStatusThroughCopy(pid, f.fd), target.exitStatus, `${where}: status`);
      } else {
        assert.equal(info.pid, restoredOf(map, target.taskPid), `${where}: target`);
      }
    }
  }
  // Pidfds that share a file still share it: the same pidfs ino (one target) on both.
  const root = restoredOf(map, image.rootPid);
  assert.equal(fdinfo(root, 3).ino, fdinfo(root, 9).ino);
  // The zombie child is still a zombie child of its restored parent.
  const z = image.tasks.find((x) => x.state === 'zombie')!;
  const zpid = restoredOf(map, z.pid);
  assert.equal(procState(zpid), 'Z');
  assert.equal(exitCodeField(zpid), z.exitStatus);
  assert.equal(parentOf(zpid), root);

  // The helper puts the bits back: fdinfo shows O_CLOEXEC exactly on the dumped ones.
  for (const task of liveTasks(image)) {
    const pid = restoredOf(map, task.pid);
    process.kill(pid, 'SIGUSR1');
    const n = Number(await waitFile(join(dir, `task-${task.pid}-${pid}.fixed`)));
    assert.equal(n, task.fds.filter((f) => f.cloexec).length, `task ${task.pid}: fds fixed`);
    for (const f of task.fds) {
      const cloexec = (fdinfo(pid, f.fd).flags & O_CLOEXEC) !== 0;
      assert.equal(cloexec, f.cloexec, `task ${task.pid} fd ${f.fd}: FD_CLOEXEC after the helper`);
    }
  }
});

const INDEX_JS = fileURLToPath(new URL('../../src/index.js', import.meta.url));

test('--exec -d of a Node program: restoreCloexecFromEnv (the library) puts FD_CLOEXEC back', async (t) => {
  const { image, dir } = await buildAndDump(t, spec);
  writeImage(dir, image);
  const script = join(dir, 'host.mjs');
  writeFileSync(
    script,
    `import { restoreCloexecFromEnv } from ${JSON.stringify(INDEX_JS)};
import { writeFileSync, renameSync } from 'node:fs';
const base = process.argv[2];
process.on('SIGUSR1', () => {
  const fds = restoreCloexecFromEnv();
  const left = [process.env.PIDFD_CR_CLOEXEC_FDS, process.env.PIDFD_CR_FDS].filter((v) => v !== undefined);
  writeFileSync(base + '.tmp', JSON.stringify({ fds, left }));
  renameSync(base + '.tmp', base + '.fixed');
});
writeFileSync(base + '.started', '');
setInterval(() => {}, 1e6);
`,
  );
  const { run, map } = await restoreDetached(t, dir, [
    process.execPath,
    script,
    join(dir, 'node-{dumped_pid}'),
  ]);
  assert.equal(run.code, 0, run.stderr);
  for (const task of liveTasks(image)) {
    const pid = restoredOf(map, task.pid);
    const base = join(dir, `node-${task.pid}`);
    await waitFile(`${base}.started`);
    // (Node, starting, made some of them close-on-exec itself: the helper sets every bit.)
    process.kill(pid, 'SIGUSR1');
    const fixed = JSON.parse(await waitFile(`${base}.fixed`)) as { fds: number[]; left: [] };
    const want = task.fds.filter((f) => f.cloexec).map((f) => f.fd);
    assert.deepEqual(fixed, { fds: want, left: [] });
    for (const f of task.fds) {
      const cloexec = (fdinfo(pid, f.fd).flags & O_CLOEXEC) !== 0;
      assert.equal(cloexec, f.cloexec, `task ${task.pid} fd ${f.fd}: FD_CLOEXEC after the helper`);
    }
  }
});

test('--exec without -d: waits for the root program, exits with its status, takes the rest down', async (t) => {
  const { image, dir } = await buildAndDump(t, spec);
  writeImage(dir, image);
  const mapPath = join(dir, 'pids.json');
  const exec = {
    [String(image.rootPid)]: ['/bin/sh', '-c', 'sleep 1; exit 3'],
    '*': ['/bin/sleep', '1000'],
  };
  const run = await runCli(
    ['restore', '-D', dir, '--pid-map', mapPath, '--exec', JSON.stringify(exec)],
    dir,
  );
  assert.equal(run.code, 3, run.stderr);
  assert.equal(run.stderr, '');
  const map = JSON.parse(readFileSync(mapPath, 'utf8')) as Record<string, number>;
  assert.deepEqual(await waitGone(Object.values(map)), [], 'the whole tree is gone');
  assertNoRundir(dir);
});

test('--exec faults: a missing or non-executable program fails by name before anything is spawned; a failing execve aborts', async (t) => {
  const { image, dir } = await buildAndDump(t, spec);
  writeImage(dir, image);
  const before = readdirSync(dir).sort();
  const missing = cli([
    'restore',
    '-D',
    dir,
    '--exec',
    JSON.stringify({ '*': ['/bin/sleep', '1'], [String(image.tasks[1]!.pid)]: ['/no/such/prog'] }),
  ]);
  assert.equal(missing.status, 27, missing.stderr);
  assert.equal(missing.stdout, '', 'nothing restored');
  assert.equal(
    missing.stderr,
    `pidfd-cr: --exec for task ${image.tasks[1]!.pid}: /no/such/prog does not exist (ENOENT)\n`,
  );
  const notExec = cli([
    'restore',
    '-D',
    dir,
    '--exec',
    JSON.stringify([join(dir, 'pidfd-cr.img')]),
  ]);
  assert.equal(notExec.status, 27, notExec.stderr);
  assert.match(notExec.stderr, / is not executable \(EACCES\)\n$/);
  const usage = cli(['restore', '-D', dir, '--exec', '["sleep"]']);
  assert.equal(usage.status, 2);
  assert.match(usage.stderr, /the program sleep is not an absolute path/);
  assert.equal(cli(['restore', '-D', dir, '-d']).status, 2);
  const held = cli(['restore', '-D', dir, '--hold', '--exec', '["/bin/true"]']);
  assert.equal(held.status, 2);
  assert.equal(held.stderr, 'pidfd-cr: restore: --exec and --hold exclude each other\n');
  assert.deepEqual(readdirSync(dir).sort(), before);

  // Executable but not a program: execve fails (ENOEXEC) in the worker, after verify.
  const junk = join(dir, 'junk');
  writeFileSync(junk, Buffer.from([0x7f, 0x00, 0x01, 0x02, 0x03]));
  chmodSync(junk, 0o755);
  const mapPath = join(dir, 'pids.json');
  const run = await runCli(
    ['restore', '-D', dir, '--pid-map', mapPath, '--exec', JSON.stringify([junk])],
    dir,
  );
  assert.equal(run.code, 27, run.stderr);
  assert.match(
    run.stderr,
    /^pidfd-cr: restore aborted .*--exec for task \d+: execve .*junk: ENOEXEC \(8\)\n$/,
  );
  const map = JSON.parse(readFileSync(mapPath, 'utf8')) as Record<string, number>;
  assert.deepEqual(await waitGone(Object.values(map)), []);
  assertNoRundir(dir);
});

interface Received {
  message: ReturnType<typeof decodeHandoffMessage>;
  fds: number[];
  /** Our fdinfo of each fd, read at once. */
  infos: ReturnType<typeof fdinfo>[];
  statuses: (number | undefined)[];
}

/** A host in this process: accepts, reads every datagram with its fds. */
function host(path: string) {
  const listenFd = listenSeqpacket(path);
  const conns: number[] = [];
  const got: Received[] = [];
  let ends = 0;
  let listening = true;
  const poll = setInterval(() => {
    if (listening)
      for (let c = acceptSeqpacket(listenFd); c !== null; c = acceptSeqpacket(listenFd))
        conns.push(c);
    for (const c of [...conns]) {
      for (let m = recvFds(c); m !== null; m = recvFds(c)) {
        if (m.payload.length === 0) {
          conns.splice(conns.indexOf(c), 1);
          closeQuiet(c);
          ends++;
          break;
        }
        got.push({
          message: decodeHandoffMessage(m.payload),
          fds: m.fds,
          infos: m.fds.map((fd) => fdinfo(process.pid, fd)),
          statuses: m.fds.map((fd) => {
            const i = pidfdGetInfo(fd, PIDFD_INFO.EXIT);
            return i.hasExit ? i.exitCode : undefined;
          }),
        });
      }
    }
  }, 5);
  return {
    got,
    get ends() {
      return ends;
    },
    closeListener: () => {
      listening = false;
      closeQuiet(listenFd);
    },
    close() {
      clearInterval(poll);
      conns.forEach(closeQuiet);
      if (listening) closeQuiet(listenFd);
      listening = false;
      for (const r of got) r.fds.forEach(closeQuiet);
    },
  };
}

/**
 * `pidfd-cr restore -D dir --pid-map … --handoff-socket <dir>/host.sock [extra…]` with a
 * host() listening there; its stdout and stderr are collected. Killed and closed at the end.
 */
function restoreToHost(t: TestContext, dir: string, extra: readonly string[] = []) {
  const sock = join(dir, 'host.sock');
  const h = host(sock);
  t.after(() => h.close());
  const mapPath = join(dir, 'pids.json');
  const child = spawn(
    process.execPath,
    [CLI, 'restore', '-D', dir, ...extra, '--pid-map', mapPath, '--handoff-socket', sock],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TMPDIR: dir } },
  );
  t.after(() => child.kill('SIGKILL'));
  const out = { stdout: '', stderr: '' };
  child.stderr.setEncoding('utf8').on('data', (d: string) => (out.stderr += d));
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out.stdout += d));
  return { sock, h, mapPath, child, out, exited: once(child, 'exit') };
}

test('--handoff-socket --hold: the host gets every pidfd with a correct descriptor, then SIGTERM ends the hold', async (t) => {
  const { image, dir } = await buildAndDump(t, spec);
  writeImage(dir, image);
  const { sock, h, mapPath, child, out, exited } = restoreToHost(t, dir, ['--hold']);
  const tasks = liveTasks(image).length;
  // The coordinator's Hello, then one connection per task.
  const end = Date.now() + 30_000;
  while (h.ends < 1 + tasks && Date.now() < end) await sleep(20);
  assert.equal(h.ends, 1 + tasks, `connections ended: ${out.stderr}`);
  const map = JSON.parse(readFileSync(mapPath, 'utf8')) as Record<string, number>;

  const hello = h.got.find((r) => r.message.hello)!;
  assert.ok(hello, 'a Hello');
  assert.equal(hello.message.hello!.tasks, tasks, 'the tasks that will connect');
  assert.equal(
    hello.message.hello!.pidfds,
    image.tasks.reduce((n, x) => n + x.fds.length, 0),
  );
  assert.equal(hello.fds.length, 0);
  const files = new Map(image.files.map((f) => [f.id, f]));
  const targets = new Map(image.targets.map((x) => [x.ino, x]));
  const batches = h.got.filter((r) => r.message.batch);
  assert.deepEqual(
    batches.map((b) => b.message.batch!.dumpedPid).sort(),
    image.tasks
      .map((x) => x.pid)
      .filter((p) => liveTasks(image).some((x) => x.pid === p))
      .sort(),
    'one batch per live task',
  );
  for (const b of batches) {
    const batch = b.message.batch!;
    const task = image.tasks.find((x) => x.pid === batch.dumpedPid)!;
    assert.equal(batch.restoredPid, restoredOf(map, task.pid));
    assert.equal(batch.index, 0);
    assert.equal(batch.count, 1);
    assert.deepEqual(
      batch.fds!.map((f) => f.fd),
      task.fds.map((f) => f.fd),
    );
    assert.equal(b.fds.length, task.fds.length, 'one attached fd per descriptor');
    batch.fds!.forEach((d, i) => {
      const entry = task.fds[i]!;
      const file = files.get(entry.fileId)!;
      const target = targets.get(file.ino)!;
      const where = `task ${task.pid} fd ${d.fd}`;
      assert.equal(d.flags, file.flags, `${where}: flags`);
      assert.equal(d.cloexec, entry.cloexec, `${where}: cloexec`);
      assert.equal(d.fileId, entry.fileId, `${where}: file`);
      assert.equal(d.kind, target.kind, `${where}: kind`);
      // What we received is that pidfd: its file flags, its target.
      const info = b.infos[i]!;
      assert.equal(info.flags & ~O_CLOEXEC, file.flags & ~O_CLOEXEC, `${where}: received flags`);
      if (target.kind === 'dead') {
        assert.equal(d.targetRestoredPid, -1);
        assert.equal(info.pid, -1, `${where}: received a dead target`);
        assert.equal(d.exitStatus, target.exitStatus);
        assert.equal(b.statuses[i], target.exitStatus, `${where}: its exit status`);
      } else {
        assert.equal(d.targetRestoredPid, restoredOf(map, target.taskPid));
        assert.equal(info.pid, d.targetRestoredPid, `${where}: fdinfo Pid of the received fd`);
      }
    });
  }
  child.kill('SIGTERM');
  const [code] = await exited;
  assert.equal(code, 0, out.stderr);
  assert.ok(
    out.stdout.endsWith(`handed the pidfds of ${tasks} tasks off to ${sock}\n`),
    out.stdout,
  );
  assert.deepEqual(await waitGone(Object.values(map)), []);
  assertNoRundir(dir);
});

test('--handoff-socket faults: nobody listening (ENOENT, ECONNREFUSED) before anything is spawned; a host that leaves mid-hand-off', async (t) => {
  const { image, dir } = await buildAndDump(t, spec);
  writeImage(dir, image);
  const none = join(dir, 'none.sock');
  const r1 = cli(['restore', '-D', dir, '--handoff-socket', none]);
  assert.equal(r1.status, 28, r1.stderr);
  assert.equal(r1.stdout, '', 'nothing restored');
  assert.equal(
    r1.stderr,
    `pidfd-cr: --handoff-socket ${none}: nobody takes the hand-off: connect (${none}) failed: ENOENT (2)\n`,
  );
  const stale = join(dir, 'stale.sock');
  closeQuiet(listenSeqpacket(stale)); // the file stays, nobody listens
  const r2 = cli(['restore', '-D', dir, '--handoff-socket', stale]);
  assert.equal(r2.status, 28, r2.stderr);
  assert.match(r2.stderr, /nobody takes the hand-off: connect .* failed: ECONNREFUSED \(111\)\n$/);

  // The host takes the Hello, then leaves: every task finds nobody (ECONNREFUSED).
  const { h, mapPath, out, exited } = restoreToHost(t, dir);
  // The Hello comes before anything is spawned: the tasks connect far later.
  const helloBy = Date.now() + 30_000;
  while (h.ends < 1 && Date.now() < helloBy) await sleep(5);
  h.closeListener();
  assert.equal(h.ends, 1, `the Hello came: ${out.stderr}`);
  const [code] = await exited;
  assert.equal(code, 28, out.stderr);
  assert.match(
    out.stderr,
    /^pidfd-cr: restore aborted .*--handoff-socket .*host\.sock: task \d+: connect .* failed: (ECONNREFUSED|ENOENT) \(\d+\)\n$/,
  );
  const map = JSON.parse(readFileSync(mapPath, 'utf8')) as Record<string, number>;
  assert.deepEqual(await waitGone(Object.values(map)), []);
  assertNoRundir(dir);
});

test('library: restoreImage({ exec, detach }) resolves detached with the tree running; thread targets are refused before spawn', async (t) => {
  const { image, dir } = await buildAndDump(t, spec);
  const result = await restoreImage(image, {
    exec: ['/bin/sleep', '1000'],
    detach: true,
    runDirParent: dir,
    workerStderr: null,
  });
  const pids = result.pidMap.pids.map((p) => p.restored);
  t.after(() => killAll(pids));
  assert.equal(result.ok, true);
  assert.equal(result.detached, true);
  assert.equal(result.rootStatus, undefined);
  for (const task of liveTasks(image)) {
    const pid = result.pidMap.pids.find((p) => p.dumped === task.pid)!.restored;
    assert.equal(readlinkSync(`/proc/${pid}/exe`), realpathSync('/bin/sleep'), `task ${task.pid}`);
    const want = [0, 1, 2, ...task.fds.map((f) => f.fd)].sort((a, b) => a - b);
    assert.deepEqual(await settledFdNumbers(pid, want), want, `task ${task.pid}: open fds`);
  }
  assertNoRundir(dir);

  const threads = await buildAndDump(t, threadLive);
  await assert.rejects(
    restoreImage(threads.image, { exec: ['/bin/true'], runDirParent: threads.dir }),
    (err: PcrError) =>
      err.code === 'PCR_ERR_UNSUPPORTED' && /--exec: task \d+ must keep threads/.test(err.message),
  );
  assertNoRundir(threads.dir);
});

/** root holds 300 pidfds (more than one SCM_RIGHTS message), a holds one. */
const many: TreeSpec = {
  root: {
    name: 'root',
    pidfds: [
      { fd: 3, target: { task: 'a' } },
      ...Array.from({ length: 299 }, (_, i) => ({
        fd: 4 + i,
        ...(i % 2 === 0
          ? { sameFileAs: { task: 'root', fd: 3 } }
          : { target: { task: 'root' }, nonblock: true }),
      })),
    ],
    children: [{ name: 'a', pidfds: [{ fd: 3, target: { task: 'root' } }] }],
  },
};

test('--handoff-socket with 300 pidfds in one task: two batches (253 + 47) that the host gets in order', async (t) => {
  const { image, dir } = await buildAndDump(t, many);
  writeImage(dir, image);
  const { h, mapPath, child, out, exited } = restoreToHost(t, dir, ['--hold']);
  const end = Date.now() + 60_000;
  while (h.ends < 3 && Date.now() < end) await sleep(20);
  assert.equal(h.ends, 3, `Hello + 2 tasks: ${out.stderr}`);
  const map = JSON.parse(readFileSync(mapPath, 'utf8')) as Record<string, number>;
  const rootBatches = h.got.filter((r) => r.message.batch?.dumpedPid === image.rootPid);
  assert.deepEqual(
    rootBatches.map((b) => [b.message.batch!.index, b.message.batch!.count, b.fds.length]),
    [
      [0, 2, 253],
      [1, 2, 47],
    ],
  );
  const root = image.tasks.find((x) => x.pid === image.rootPid)!;
  assert.deepEqual(
    rootBatches.flatMap((b) => b.message.batch!.fds!.map((f) => f.fd)),
    root.fds.map((f) => f.fd),
  );
  const files = new Map(image.files.map((f) => [f.id, f]));
  const restoredA = restoredOf(map, image.tasks[1]!.pid);
  const restoredRoot = restoredOf(map, image.rootPid);
  for (const b of rootBatches)
    b.message.batch!.fds!.forEach((d, i) => {
      const file = files.get(d.fileId!)!;
      assert.equal(b.infos[i]!.flags & ~O_CLOEXEC, file.flags & ~O_CLOEXEC, `fd ${d.fd}`);
      assert.equal(b.infos[i]!.pid, d.targetRestoredPid, `fd ${d.fd}`);
      assert.ok([restoredA, restoredRoot].includes(b.infos[i]!.pid));
    });
  child.kill('SIGTERM');
  const [code] = await exited;
  assert.equal(code, 0, out.stderr);
  assert.deepEqual(await waitGone(Object.values(map)), []);
  assertNoRundir(dir);
});

test('--exec without -d: SIGTERM takes the programs down (143), nothing left', async (t) => {
  const { image, dir } = await buildAndDump(t, spec);
  writeImage(dir, image);
  const mapPath = join(dir, 'pids.json');
  const child = spawn(
    process.execPath,
    [CLI, 'restore', '-D', dir, '--pid-map', mapPath, '--exec', '["/bin/sleep","1000"]'],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TMPDIR: dir } },
  );
  t.after(() => child.kill('SIGKILL'));
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = once(child, 'exit');
  // Every live task runs /bin/sleep.
  const end = Date.now() + 30_000;
  let map: Record<string, number> = {};
  const sleeping = (): boolean => {
    if (!existsSync(mapPath)) return false;
    map = JSON.parse(readFileSync(mapPath, 'utf8')) as Record<string, number>;
    return liveTasks(image).every((x) => {
      try {
        return readlinkSync(`/proc/${restoredOf(map, x.pid)}/exe`) === realpathSync('/bin/sleep');
      } catch {
        return false;
      }
    });
  };
  while (!sleeping() && Date.now() < end) await sleep(20);
  assert.ok(sleeping(), `every task execs /bin/sleep: ${stderr}`);
  child.kill('SIGTERM');
  const [code] = await exited;
  assert.equal(code, 143);
  assert.equal(
    stderr,
    'pidfd-cr: the tree of --exec programs was taken down: interrupted by SIGTERM\n',
  );
  assert.deepEqual(await waitGone(Object.values(map)), []);
  assertNoRundir(dir);
});

test('--exec of programs that exit at once (/bin/true): neither -d nor the wait mistakes them for lost tasks', async (t) => {
  const { image, dir } = await buildAndDump(t, spec);
  writeImage(dir, image);
  const mapPath = join(dir, 'pids.json');
  for (const detach of [true, false, true, false]) {
    const run = await runCli(
      [
        'restore',
        '-D',
        dir,
        '--pid-map',
        mapPath,
        '--exec',
        '["/bin/true"]',
        ...(detach ? ['-d'] : []),
      ],
      dir,
    );
    assert.equal(run.code, 0, `${detach ? '-d' : 'no -d'}: ${run.stderr}`);
    assert.equal(run.stderr, '');
    const map = JSON.parse(readFileSync(mapPath, 'utf8')) as Record<string, number>;
    assert.deepEqual(await waitGone(Object.values(map)), []);
    assertNoRundir(dir);
  }
});
