/**
 * restore --same-pids (issue 9) on real trees, checked from /proc from outside:
 *
 *     root ── a ── a1        root: pidfds to a, a dead process (exit 3), a1
 *          │               a: pidfds to a1 and to itself (zdtm pidfd_self)
 *          └─ z (zombie)   a1: pidfd to root
 *
 * dump --kill frees the pids (the test reaps what comes back to it, as a shell would);
 * the restore puts every task at its dumped pid under its dumped parent, and every
 * pidfd's fdinfo Pid: says what it said before the dump. The pids are those the kernel
 * gave the tree just now (free then); if another process on this loaded machine takes
 * one between the kill and the restore, the scenario is built again (at most 3 times).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildTree, exited, type BuiltTree, type TreeSpec } from '../../src/testing/index.js';
import { dumpToDir, dumpTree } from '../../src/dump/index.js';
import { PcrError } from '../../src/errors.js';
import type { Image } from '../../src/model/image.js';
import { restoreImage, type RestoreResult } from '../../src/restore/restore-image.js';
import { imagePath } from '../../src/image/store.js';
import { prctl, PR_SET_CHILD_SUBREAPER } from '../../native/index.js';
import { childrenOf, descendantsOf, exists, fdinfo, parentOf } from '../helpers/proc-view.js';
import { waitGone } from '../helpers/restore-run.js';
import { waitUntil } from '../helpers/holder.js';
import { CLI } from '../fixtures/dump-helpers.js';
import { worldReadableCopy } from '../helpers/world-readable.js';
import { canChoosePids } from '../../src/sys/pid-choose.js';

const execFileP = promisify(execFile);

const skip = canChoosePids() ? false : 'needs CAP_CHECKPOINT_RESTORE (or root)';

const TREE: TreeSpec = {
  root: {
    name: 'root',
    pidfds: [
      { fd: 3, target: { task: 'a' } },
      { fd: 4, target: { dead: { status: exited(3) } } },
      { fd: 5, target: { task: 'a1' }, nonblock: true },
    ],
    children: [
      {
        name: 'a',
        pidfds: [
          { fd: 3, target: { task: 'a1' } },
          { fd: 9, target: { task: 'a' } },
        ],
        children: [{ name: 'a1', pidfds: [{ fd: 4, target: { task: 'root' } }] }],
      },
      { name: 'z', zombie: { status: exited(5) } },
    ],
  },
};

/** fdinfo Pid: of every pidfd of every task, keyed "pid:fd". */
function pidfdPids(image: Image): Map<string, number> {
  const out = new Map<string, number>();
  for (const t of image.tasks)
    for (const f of t.fds) out.set(`${t.pid}:${f.fd}`, fdinfo(t.pid, f.fd).pid);
  return out;
}

type After = { after(fn: () => unknown): void };

/** Builds TREE, records every pidfd's Pid:, dumps it with --kill into `dir`. */
async function buildDumpKill(t: After, dir: string) {
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  const built = await buildTree(TREE);
  t.after(() => built.destroy());
  const before = pidfdPids(await dumpTree(built.rootPid));
  const dumping = dumpToDir(built.rootPid, dir, { kill: true, force: true });
  // As a shell reaps its job: once every task is dead, reap them (we are their parent,
  // or their subreaper once their parents died), so that the dump sees the pids free.
  await waitUntil('the dumped tree killed', () =>
    built.taskPids.every((p) => !exists(p) || /^\S+ \(.*\) Z/.test(stat(p))),
  );
  await built.destroy();
  const { image } = await dumping;
  return { built, image, before };
}

function stat(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return '';
  }
}

/** Looks at the restored tree from outside while it is held. */
function lookFromOutside(image: Image, before: Map<string, number>): string[] {
  const problems: string[] = [];
  for (const task of image.tasks) {
    if (!exists(task.pid)) {
      problems.push(`task ${task.pid}: no process at that pid`);
      continue;
    }
    if (task.pid !== image.rootPid && parentOf(task.pid) !== task.ppid)
      problems.push(`task ${task.pid}: parent ${parentOf(task.pid)}, dumped ${task.ppid}`);
    for (const f of task.fds) {
      const got = fdinfo(task.pid, f.fd).pid;
      const want = before.get(`${task.pid}:${f.fd}`);
      if (got !== want) problems.push(`task ${task.pid} fd ${f.fd}: Pid: ${got}, before ${want}`);
    }
  }
  return problems;
}

async function restoreHeldSamePids(image: Image, before: Map<string, number>, parent: string) {
  const stop = new AbortController();
  let problems: string[] = [];
  let everyone: number[] = [];
  const result: RestoreResult = await restoreImage(image, {
    samePids: true,
    hold: true,
    signal: stop.signal,
    runDirParent: parent,
    timeoutMs: 60_000,
    onVerified: () => {
      everyone = [image.rootPid, ...descendantsOf(image.rootPid)];
      problems = lookFromOutside(image, before);
      stop.abort('checked');
    },
  });
  return { result, problems, everyone };
}

const pidTakenByOthers = (e: unknown): boolean =>
  e instanceof PcrError && e.code === 'PCR_ERR_PID_TAKEN';

test(
  'dump --kill, then restore --same-pids: every task at its pid and parent, every Pid: as before',
  { skip },
  async (t) => {
    const parent = mkdtempSync(join(tmpdir(), 'pcr-same-pids-'));
    t.after(() => rmSync(parent, { recursive: true, force: true }));
    for (let round = 1; ; round++) {
      const dir = mkdtempSync(join(parent, 'img-'));
      const { image, before } = await buildDumpKill(t, dir);
      assert.equal(image.tasks.length, 4);
      for (const task of image.tasks)
        assert.equal(exists(task.pid), false, `pid ${task.pid} freed`);
      let r: Awaited<ReturnType<typeof restoreHeldSamePids>>;
      try {
        r = await restoreHeldSamePids(image, before, parent);
      } catch (e) {
        if (round < 3 && pidTakenByOthers(e)) continue; // another process took one meanwhile
        throw e;
      }
      assert.equal(r.result.ok, true, JSON.stringify(r.result.differences));
      assert.deepEqual(r.problems, [], 'the restored tree seen from /proc');
      assert.deepEqual(
        r.result.pidMap.pids,
        image.tasks
          .map((x) => ({ dumped: x.pid, restored: x.pid }))
          .sort((a, b) => a.dumped - b.dumped),
        'the pid map is the identity',
      );
      // The zdtm pidfd_self case: a's pidfd to itself says a's own pid, as before.
      const a = image.tasks.find((x) => x.ppid === image.rootPid && x.state !== 'zombie')!;
      assert.equal(before.get(`${a.pid}:9`), a.pid);
      assert.equal(r.everyone.length, 4, 'root, a, a1 and the zombie were there');
      assert.deepEqual(await waitGone(r.everyone), [], 'all gone after the restore');
      assert.deepEqual(
        readdirSync(parent).filter((n) => !n.startsWith('img-')),
        [],
        'no run directory',
      );
      return;
    }
  },
);

test('a pidfd to itself keeps its Pid: (zdtm pidfd_self), through the CLI', { skip }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pcr-pidfd-self-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  const built: BuiltTree = await buildTree({
    root: { name: 'self', pidfds: [{ fd: 7, target: { task: 'self' } }] },
  });
  t.after(() => built.destroy());
  const self = built.rootPid;
  assert.equal(fdinfo(self, 7).pid, self);
  // The CLI's dump --kill; we reap the killed task (our child), as a shell reaps its job.
  const dumping = execFileP(
    process.execPath,
    [CLI, 'dump', '-t', String(self), '-D', dir, '--kill'],
    {
      encoding: 'utf8',
      timeout: 60_000,
    },
  );
  await waitUntil('killed', () => !exists(self) || / Z /.test(stat(self)));
  await built.destroy();
  const dumped = await dumping;
  assert.equal(
    dumped.stdout,
    `dumped 1 task, 1 pidfd (1 open file, 1 target) to ${imagePath(dir)}\nkilled the dumped tree; its pids are free\n`,
  );
  const pidfile = join(dir, 'root.pid');
  const r = spawnSync(
    process.execPath,
    [CLI, 'restore', '-D', dir, '--same-pids', '--pidfile', pidfile],
    {
      encoding: 'utf8',
      timeout: 60_000,
    },
  );
  if (r.status === 16 && !r.stderr.includes(`pid ${self}:`))
    return t.skip('pid taken by another process meanwhile');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(readFileSync(pidfile, 'utf8'), `${self}\n`, 'restored at its dumped pid');
  assert.match(r.stdout, new RegExp(`^ +${self} -> ${self} `, 'm'));
  assert.match(r.stdout, /verification: OK, 1 pidfd in 1 task match the image/);
  assert.equal(exists(self), false, 'taken down');
});

test(
  'a dumped pid in use: refused before anything starts, naming the pid and its holder',
  { skip },
  async (t) => {
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    const built = await buildTree(TREE);
    t.after(() => built.destroy());
    const image = await dumpTree(built.rootPid); // not killed: every pid is still in use
    const parent = mkdtempSync(join(tmpdir(), 'pcr-same-pids-taken-'));
    t.after(() => rmSync(parent, { recursive: true, force: true }));
    const before = childrenOf(process.pid).length;
    const root = image.tasks[0]!;
    await assert.rejects(
      restoreImage(image, { samePids: true, runDirParent: parent }),
      (e: unknown) => {
        assert.ok(e instanceof PcrError, String(e));
        assert.equal(e.code, 'PCR_ERR_PID_TAKEN');
        assert.equal(
          e.message,
          `task ${root.pid} (${root.comm}) cannot get its pid ${root.pid}: it is in use by ${root.comm}`,
        );
        return true;
      },
    );
    assert.equal(childrenOf(process.pid).length, before, 'no process started');
    assert.deepEqual(readdirSync(parent), [], 'no run directory');
  },
);

test('a race for a pid (injected: PCR_PID_RACE) is retried and won', { skip }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pcr-same-pids-race-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  for (let round = 1; ; round++) {
    const { image } = await buildDumpKill(t, dir);
    const a1 = image.tasks.find(
      (x) =>
        x.comm !== 'sh' &&
        !image.tasks.some((c) => c.ppid === x.pid) &&
        x.state !== 'zombie' &&
        x.pid !== image.rootPid,
    )!;
    const pidMap = join(dir, 'pids.json');
    const r = spawnSync(
      process.execPath,
      [CLI, 'restore', '-D', dir, '--same-pids', '--pid-map', pidMap],
      { encoding: 'utf8', timeout: 60_000, env: { ...process.env, PCR_PID_RACE: `${a1.pid}:2` } },
    );
    if (r.status === 16 && round < 3 && !r.stderr.includes('in use by true')) continue;
    assert.equal(r.status, 0, r.stderr);
    const retries = r.stderr.split('\n').filter((l) => l.includes(`pid ${a1.pid} was taken by`));
    assert.equal(retries.length, 2, r.stderr);
    assert.match(retries[0]!, /retry 1$/);
    assert.match(retries[1]!, /retry 2$/);
    const map = JSON.parse(readFileSync(pidMap, 'utf8')) as Record<string, number>;
    for (const task of image.tasks) assert.equal(map[task.pid], task.pid, `task ${task.pid}`);
    return;
  }
});

test(
  'a race lost at every retry: PCR_ERR_PID_TAKEN naming the thief, nothing left',
  { skip },
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'pcr-same-pids-lost-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const { image } = await buildDumpKill(t, dir);
    const root = image.rootPid;
    const r = spawnSync(process.execPath, [CLI, 'restore', '-D', dir, '--same-pids'], {
      encoding: 'utf8',
      timeout: 60_000,
      env: { ...process.env, PCR_PID_RACE: `${root}:99` },
    });
    assert.equal(r.status, 16, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(`task ${root} cannot get its pid ${root}: it is in use by true\\n$`),
    );
    for (const task of image.tasks) assert.equal(exists(task.pid), false, `nothing at ${task.pid}`);
  },
);

test(
  'without CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN (uid 65534): a clear error, exit 20',
  { skip },
  async (t) => {
    if (process.getuid?.() !== 0 || !existsSync('/usr/bin/setpriv')) {
      t.skip('needs root to drop to another uid with setpriv');
      return;
    }
    const dir = mkdtempSync(join(tmpdir(), 'pcr-same-pids-nobody-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    chmodSync(dir, 0o755);
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    const built = await buildTree({ root: { name: 'solo' } });
    t.after(() => built.destroy());
    await dumpToDir(built.rootPid, dir);
    chmodSync(imagePath(dir), 0o644);
    const { cli, remove } = worldReadableCopy();
    t.after(remove);
    const r = spawnSync(
      '/usr/bin/setpriv',
      [
        '--reuid=65534',
        '--regid=65534',
        '--clear-groups',
        process.execPath,
        cli,
        'restore',
        '-D',
        dir,
        '--same-pids',
      ],
      { encoding: 'utf8', cwd: '/', timeout: 60_000 },
    );
    assert.equal(r.status, 20, r.stderr);
    assert.equal(
      r.stderr,
      'pidfd-cr: --same-pids needs CAP_CHECKPOINT_RESTORE (or CAP_SYS_ADMIN, or root) to choose pids (clone3 set_tid); this process (uid 65534) has neither\n',
    );
    const ns = spawnSync(
      '/usr/bin/setpriv',
      [
        '--reuid=65534',
        '--regid=65534',
        '--clear-groups',
        process.execPath,
        cli,
        'restore',
        '-D',
        dir,
        '--pidns',
        'new',
      ],
      { encoding: 'utf8', cwd: '/', timeout: 60_000 },
    );
    assert.equal(ns.status, 20, ns.stderr);
    assert.equal(
      ns.stderr,
      'pidfd-cr: --pidns new needs CAP_SYS_ADMIN (root) to make a pid namespace; this process (uid 65534) does not have it\n',
    );
  },
);
