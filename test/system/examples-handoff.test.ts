/**
 * The hand-off examples of docs/embedding.md, run as a reader would run them, on a real
 * tree (zombie, dead target with its status, close-on-exec and not, O_NONBLOCK, a shared
 * file): examples/handoff-exec.sh (restore --exec -d --status-fd of the C program
 * examples/handoff-prog.c) is checked from outside through /proc, then the detached tree
 * is killed; examples/handoff-host.py (a Python host on --handoff-socket) prints a summary
 * that is checked against the image. Nothing may be left.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { writeImage } from '../../src/image/store.js';
import type { Image } from '../../src/model/image.js';
import { handoffTree } from '../fixtures/scenarios.js';
import { CLI } from '../fixtures/dump-helpers.js';
import { buildAndDump, waitGone } from '../helpers/restore-run.js';
import { exitStatusThroughCopy } from '../helpers/restored-view.js';
import { exitCodeField, fdNumbers, fdinfo, parentOf, procState } from '../helpers/proc-view.js';

const ROOT = resolve(new URL('../../..', import.meta.url).pathname);
const O_CLOEXEC = 0o2000000;

/** The hand-off tree (fixtures/scenarios.ts), b's pidfd at fd 12 here. */
const spec = handoffTree(12);

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a program to its end, stdout and stderr read to their ends. */
async function runProgram(argv: string[], env: NodeJS.ProcessEnv): Promise<Run> {
  const child = spawn(argv[0]!, argv.slice(1), {
    stdio: ['ignore', 'pipe', 'pipe'],
    cwd: ROOT,
    env: { ...process.env, ...env },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const [[code]] = (await Promise.all([once(child, 'exit'), once(child, 'close')])) as [
    [number | null],
    unknown,
  ];
  return { code, stdout, stderr };
}

const liveTasks = (image: Image) => image.tasks.filter((t) => t.state !== 'zombie');

/** No run directory (pcr-*) left in `dir`. */
function assertNoRundir(dir: string): void {
  assert.deepEqual(
    readdirSync(dir).filter((f) => f.startsWith('pcr-')),
    [],
    'no run directory left',
  );
}

interface ViewFd {
  fd: number;
  link: string;
  flags: number;
  pid: number;
}
interface View {
  pid: number;
  dumped_pid: number;
  cloexec_restored: number;
  fds: ViewFd[];
}

test('examples/handoff-exec.sh: each task runs the C program with its pidfds at the dumped numbers, flags and targets; the tree is detached', async (t) => {
  const { image, dir } = await buildAndDump(t, spec);
  writeImage(dir, image);
  const work = join(dir, 'work');
  mkdirSync(work);
  const mapPath = join(work, 'pid-map.json');
  const readMap = () => JSON.parse(readFileSync(mapPath, 'utf8')) as Record<string, number>;
  t.after(async () => {
    const everyone = existsSync(mapPath) ? Object.values(readMap()) : [];
    for (const pid of everyone) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
    await waitGone(everyone);
  });
  const run = await runProgram([join(ROOT, 'examples', 'handoff-exec.sh'), dir, work], {
    PIDFD_CR: `${process.execPath} ${CLI}`,
    TMPDIR: dir, // a run directory left behind would be found here
  });
  assert.equal(run.code, 0, run.stderr);
  const map = readMap();
  const everyone = Object.values(map);
  const restored = (dumped: number): number => {
    const r = map[String(dumped)];
    assert.ok(r !== undefined, `task ${dumped} in the pid map`);
    return r;
  };
  const root = restored(image.rootPid);
  assert.match(run.stderr, new RegExp(`the tree runs on, root pid ${root};`));
  assert.deepEqual(readFileSync(join(work, 'ready')), Buffer.of(0), 'the status byte');
  assert.equal(readFileSync(join(work, 'root.pid'), 'utf8').trim(), String(root));
  assert.match(
    readFileSync(join(work, 'restore.log'), 'utf8'),
    new RegExp(`^detached: every task runs its --exec program \\(root pid ${root}\\)$`, 'm'),
  );
  assertNoRundir(dir);

  const views = run.stdout
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l) as View);
  assert.deepEqual(
    views.map((v) => v.dumped_pid).sort((a, b) => a - b),
    liveTasks(image)
      .map((x) => x.pid)
      .sort((a, b) => a - b),
    'one view per live task',
  );
  const prog = join(work, 'handoff-prog');
  const files = new Map(image.files.map((f) => [f.id, f]));
  const targets = new Map(image.targets.map((x) => [x.ino, x]));
  for (const view of views) {
    const task = image.tasks.find((x) => x.pid === view.dumped_pid)!;
    const pid = restored(task.pid);
    const name = `task ${task.pid} (pid ${pid})`;
    assert.equal(view.pid, pid, `${name}: the program runs in the restored task`);
    assert.equal(readlinkSync(`/proc/${pid}/exe`), prog, `${name} runs the program`);
    if (task.pid !== image.rootPid)
      assert.equal(parentOf(pid), restored(task.ppid), `${name} keeps its parent`);
    assert.equal(
      view.cloexec_restored,
      task.fds.filter((f) => f.cloexec).length,
      `${name}: the helper put FD_CLOEXEC back on the dumped ones`,
    );
    // From outside: fds 0-2 and exactly the dumped pidfds, nothing of the worker.
    const want = [0, 1, 2, ...task.fds.map((f) => f.fd)].sort((a, b) => a - b);
    assert.deepEqual(fdNumbers(pid), want, `${name}: open fds`);
    assert.deepEqual(
      view.fds.map((f) => f.fd),
      want,
      `${name}: the program's own view`,
    );
    for (const f of task.fds) {
      const where = `${name} fd ${f.fd}`;
      assert.equal(readlinkSync(`/proc/${pid}/fd/${f.fd}`), 'anon_inode:[pidfd]', where);
      const file = files.get(f.fileId)!;
      const target = targets.get(file.ino)!;
      const info = fdinfo(pid, f.fd);
      assert.equal(info.flags & ~O_CLOEXEC, file.flags & ~O_CLOEXEC, `${where}: flags`);
      assert.equal((info.flags & O_CLOEXEC) !== 0, f.cloexec, `${where}: close-on-exec`);
      if (target.kind === 'dead') {
        assert.equal(info.pid, -1, `${where}: dead target`);
        assert.equal(exitStatusThroughCopy(pid, f.fd), target.exitStatus, `${where}: status`);
      } else {
        assert.equal(info.pid, restored(target.taskPid), `${where}: target`);
      }
      const own = view.fds.find((v) => v.fd === f.fd)!;
      assert.deepEqual(
        { link: own.link, flags: own.flags, pid: own.pid },
        { link: 'anon_inode:[pidfd]', flags: info.flags, pid: info.pid },
        `${where}: the program sees what /proc shows from outside`,
      );
    }
  }
  // One open file still: fds 3 and 9 of the root share their pidfs inode (one target).
  assert.equal(fdinfo(root, 3).ino, fdinfo(root, 9).ino);
  const z = image.tasks.find((x) => x.state === 'zombie')!;
  assert.equal(procState(restored(z.pid)), 'Z');
  assert.equal(exitCodeField(restored(z.pid)), z.exitStatus);
  assert.equal(parentOf(restored(z.pid)), root);

  // The host's part ends the tree: kill -KILL every pid of the map, nothing left.
  for (const pid of everyone) process.kill(pid, 'SIGKILL');
  assert.deepEqual(await waitGone(everyone), []);
});

interface HostSummary {
  hello?: { tasks: number; pidfds: number };
  tasks?: Record<
    string,
    {
      restored_pid: number;
      fds: {
        fd: number;
        flags: number;
        cloexec: boolean;
        file_id: number;
        kind: string;
        target_pid: number;
        target_restored_pid: number;
        fdinfo_pid: number;
        exit_status?: number;
      }[];
    }
  >;
  received?: number;
  mismatches?: string[];
  error?: string;
  pidfd_cr_exit: number;
}

test('examples/handoff-host.py: a Python host receives every pidfd over --handoff-socket and finds each one targets its restored pid', async (t) => {
  const { image, dir } = await buildAndDump(t, spec);
  writeImage(dir, image);
  const run = await runProgram(
    [
      '/usr/bin/python3',
      join(ROOT, 'examples', 'handoff-host.py'),
      '--dir',
      dir,
      '--pidfd-cr',
      `${process.execPath} ${CLI}`,
    ],
    { TMPDIR: dir },
  );
  assert.equal(run.code, 0, run.stderr);
  const summary = JSON.parse(run.stdout) as HostSummary;
  const live = liveTasks(image);
  const pidfds = image.tasks.reduce((n, x) => n + x.fds.length, 0);
  assert.deepEqual(summary.hello, { tasks: live.length, pidfds });
  assert.equal(summary.received, pidfds);
  assert.deepEqual(summary.mismatches, []);
  assert.equal(summary.pidfd_cr_exit, 0);
  assert.deepEqual(
    Object.keys(summary.tasks!).sort(),
    live.map((x) => String(x.pid)).sort(),
    'one entry per live task',
  );
  // The descriptors as the image says, the restored pids consistent across tasks.
  const restoredOf = new Map(
    Object.entries(summary.tasks!).map(([d, x]) => [Number(d), x.restored_pid]),
  );
  const files = new Map(image.files.map((f) => [f.id, f]));
  const targets = new Map(image.targets.map((x) => [x.ino, x]));
  for (const task of live) {
    const got = summary.tasks![String(task.pid)]!;
    assert.notEqual(got.restored_pid, task.pid, 'a new process');
    assert.deepEqual(
      got.fds.map((f) => f.fd),
      task.fds.map((f) => f.fd),
    );
    got.fds.forEach((d, i) => {
      const entry = task.fds[i]!;
      const file = files.get(entry.fileId)!;
      const target = targets.get(file.ino)!;
      const where = `task ${task.pid} fd ${d.fd}`;
      assert.equal(d.flags, file.flags, `${where}: flags`);
      assert.equal(d.cloexec, entry.cloexec, `${where}: cloexec`);
      assert.equal(d.file_id, entry.fileId, `${where}: file`);
      assert.equal(d.kind, target.kind, `${where}: kind`);
      if (target.kind === 'dead') {
        assert.deepEqual(
          [d.target_restored_pid, d.fdinfo_pid, d.exit_status],
          [-1, -1, target.exitStatus],
          where,
        );
      } else {
        // A zombie target is no entry of its own (it connects to nobody): its restored
        // pid is checked by the host against fdinfo, and is no pid of a live task.
        const want = restoredOf.get(target.taskPid!);
        if (want !== undefined) assert.equal(d.target_restored_pid, want, `${where}: target`);
        else assert.ok(![...restoredOf.values()].includes(d.target_restored_pid), where);
        assert.equal(d.fdinfo_pid, d.target_restored_pid, `${where}: fdinfo Pid: of the fd`);
        assert.ok(d.target_restored_pid > 0, where);
      }
    });
  }
  // The hold ended: the tree is gone; no run directory, no socket directory left.
  assert.deepEqual(await waitGone([...restoredOf.values()]), []);
  assertNoRundir(dir);
});
