/**
 * `pidfd-cr restore` as a user runs it: --hold keeps the restored tree (checked from
 * /proc through the --pid-map file) until SIGTERM, then exits 0 with nothing left;
 * --trace-file writes the NDJSON trace (docs/trace.md); bad usage exits 2. Two restores
 * of one image at once do not cross.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readdirSync,
  rmSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { prctl, PR_SET_CHILD_SUBREAPER } from '../../native/index.js';
import { join } from 'node:path';
import { once } from 'node:events';
import { writeImage } from '../../src/image/store.js';
import { DEMO_TREE, type TaskSpec } from '../../src/testing/index.js';
import { restoreImage } from '../../src/restore/restore-image.js';
import type { PidMap } from '../../src/protocol/messages.js';
import { sharedScm, benchmark } from '../fixtures/scenarios.js';
import { buildAndDump, waitGone } from '../helpers/restore-run.js';
import { checkRestored } from '../helpers/restored-view.js';
import { descendantsOf } from '../helpers/proc-view.js';
import { CLI, cli } from '../fixtures/dump-helpers.js';

/**
 * A file that open(O_WRONLY) refuses with EACCES: in a 0500 directory, or, for root
 * (which may write there anyway), a read-only sysfs file; undefined if neither is.
 */
function unwritable(t: { after(fn: () => void): void }): string | undefined {
  const ro = mkdtempSync(join(tmpdir(), 'pcr-read-only-'));
  t.after(() => rmSync(ro, { recursive: true, force: true }));
  chmodSync(ro, 0o500);
  for (const path of [join(ro, 'trace.ndjson'), '/sys/kernel/notes']) {
    try {
      closeSync(openSync(path, 'w'));
      if (path.startsWith(ro)) rmSync(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EACCES') return path;
    }
  }
  return undefined;
}

function pidMapFrom(path: string): PidMap {
  const json = JSON.parse(readFileSync(path, 'utf8')) as Record<string, number>;
  return {
    pids: Object.entries(json).map(([d, r]) => ({ dumped: Number(d), restored: r })),
    tids: [],
  };
}

test('restore --hold --pid-map --trace-file: held tree is right from /proc; SIGTERM ends it, exit 0', async (t) => {
  const { image, dir } = await buildAndDump(t, sharedScm);
  writeImage(dir, image);
  const mapPath = join(dir, 'pids.json');
  const tracePath = join(dir, 'trace.ndjson');
  const child = spawn(
    process.execPath,
    [CLI, 'restore', '-D', dir, '--hold', '--pid-map', mapPath, '--trace-file', tracePath],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TMPDIR: dir } },
  );
  t.after(() => child.kill('SIGKILL'));
  let out = '';
  child.stdout.setEncoding('utf8');
  const holding = new Promise<void>((resolve) =>
    child.stdout.on('data', (d: string) => {
      out += d;
      if (out.includes('holding the restored tree')) resolve();
    }),
  );
  const exited = once(child, 'exit');
  await Promise.race([holding, exited]);
  const nfds = image.tasks.reduce((n, task) => n + task.fds.length, 0);
  assert.ok(out.includes(`verification: OK, ${nfds} pidfds in 3 tasks match the image`), out);
  const map = pidMapFrom(mapPath);
  assert.deepEqual(checkRestored(image, map, child.pid!), []);
  const everyone = descendantsOf(child.pid!);
  assert.ok(everyone.length >= 3);
  child.kill('SIGTERM');
  const [code] = await exited;
  assert.equal(code, 0);
  assert.deepEqual(await waitGone(everyone), []);
  assert.deepEqual(readdirSync(dir).sort(), ['pidfd-cr.img', 'pids.json', 'trace.ndjson']);
  const events = readFileSync(tracePath, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  const sources = new Set(events.map((e) => e.source));
  assert.deepEqual(sources, new Set(['coordinator', ...image.tasks.map((t) => `task:${t.pid}`)]));
  for (const e of events) {
    assert.equal(e.v, 1);
    for (const k of ['time', 'source', 'pid', 'from', 'to', 'event', 'details']) {
      assert.ok(k in e, `trace event has ${k}`);
    }
  }
  assert.ok(events.some((e) => e.source === 'coordinator' && e.to === 'holding'));
  // Every worker's last state change arrives, and fd transfers name their peers.
  for (const t of image.tasks.filter((x) => x.state !== 'zombie')) {
    assert.ok(
      events.some(
        (e) => e.source === `task:${t.pid}` && e.from === 'tearing-down' && e.to === 'done',
      ),
      `task ${t.pid} tearing-down -> done`,
    );
  }
  // (State changes out of them: the fd-transfer events of those states are no change.)
  const transfers = events.filter(
    (e) => e.from !== e.to && (e.from === 'sending' || e.from === 'wait-for-fd'),
  );
  assert.ok(transfers.length > 0);
  for (const e of transfers) assert.ok(Array.isArray((e.details as { peer?: unknown }).peer));
});

test('restore usage errors exit 2 with one line', () => {
  const r = cli(['restore']);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /^pidfd-cr: restore: -D DIR is required\n$/);
  const bad = cli(['restore', '-D', '/x', '--timeout', 'soon']);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--timeout must be a positive integer/);
  // 2147484 s overflows setTimeout's 2^31-1 ms (it would fire at once).
  const big = cli(['restore', '-D', '/x', '--timeout', '2147484']);
  assert.equal(big.status, 2);
  assert.match(big.stderr, /^pidfd-cr: restore: --timeout must be at most 2147483 seconds\n$/);
});

test('bad --pid-map and --trace-file paths are usage errors before anything is restored', async (t) => {
  const { image, dir } = await buildAndDump(t, benchmark);
  writeImage(dir, image);
  const cases: Array<[string, string]> = [
    ['--pid-map', join(dir, 'no-such-dir', 'map.json')],
    ['--pid-map', dir],
    ['--trace-file', join(dir, 'no-such-dir', 'trace.ndjson')],
    ['--trace-file', dir],
  ];
  const denied = unwritable(t);
  if (denied) cases.push(['--trace-file', denied]);
  else t.diagnostic('no path here that open(2) refuses with EACCES: that case is skipped');
  for (const [option, path] of cases) {
    const r = spawnSync(process.execPath, [CLI, 'restore', '-D', dir, option, path], {
      encoding: 'utf8',
      env: { ...process.env, TMPDIR: dir },
    });
    assert.equal(r.status, 2, r.stderr);
    assert.ok(r.stderr.startsWith(`pidfd-cr: restore: ${option} ${path}: `), r.stderr);
    assert.equal(r.stderr.split('\n').length, 2, r.stderr);
    assert.equal(r.stdout, '', 'nothing restored');
    assert.deepEqual(readdirSync(dir), ['pidfd-cr.img']);
  }
});

test('an image that needs more processes than --max-processes is refused before any is started', async (t) => {
  const { image, dir } = await buildAndDump(t, benchmark);
  writeImage(dir, image);
  const before = new Set(descendantsOf(process.pid));
  const r = spawnSync(process.execPath, [CLI, 'restore', '-D', dir, '--max-processes', '3'], {
    encoding: 'utf8',
    env: { ...process.env, TMPDIR: dir },
  });
  assert.equal(r.status, 13, r.stderr);
  assert.match(
    r.stderr,
    /^pidfd-cr: the image needs \d+ processes .*more than the limit of 3 \(--max-processes\)\n$/,
  );
  assert.equal(r.stdout, '');
  assert.deepEqual(readdirSync(dir), ['pidfd-cr.img'], 'no run directory was made');
  assert.deepEqual(
    descendantsOf(process.pid).filter((p) => !before.has(p)),
    [],
  );
});

test('--trace-file on a full device: the restore stops, names the file and ENOSPC, exit 12, nothing left', async (t) => {
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  const { image, dir } = await buildAndDump(t, sharedScm);
  writeImage(dir, image);
  const before = new Set(descendantsOf(process.pid));
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [CLI, 'restore', '-D', dir, '--trace-file', '/dev/full'], {
    encoding: 'utf8',
    env: { ...process.env, TMPDIR: dir },
    timeout: 60_000, // it used to hang for ever: fail instead
    killSignal: 'SIGKILL',
  });
  assert.equal(r.signal, null, `killed after ${(performance.now() - t0).toFixed(0)} ms: it hung`);
  assert.equal(r.status, 12, r.stderr);
  assert.equal(r.stderr, 'pidfd-cr: write (trace file /dev/full) failed: ENOSPC (28)\n');
  assert.doesNotMatch(r.stdout, /verification/);
  assert.deepEqual(
    descendantsOf(process.pid).filter((p) => !before.has(p)),
    [],
    'nothing came back to us',
  );
  assert.deepEqual(readdirSync(dir), ['pidfd-cr.img'], 'run directory removed');
});

test('two restores of one image at once do not cross', async (t) => {
  const { image, dir } = await buildAndDump(t, benchmark);
  const [a, b] = await Promise.all([
    restoreImage(image, { runDirParent: dir }),
    restoreImage(image, { runDirParent: dir }),
  ]);
  assert.equal(a.ok, true, JSON.stringify(a.differences));
  assert.equal(b.ok, true, JSON.stringify(b.differences));
  const pidsA = new Set(a.pidMap.pids.map((p) => p.restored));
  assert.ok(
    b.pidMap.pids.every((p) => !pidsA.has(p.restored)),
    'disjoint restored pids',
  );
  assert.deepEqual(readdirSync(dir), []);
  assert.equal(existsSync(join(dir, 'ctl')), false);
});

test('restore prints the differences and exits 1 when the restored tree differs', async (t) => {
  const { image, dir } = await buildAndDump(t, sharedScm);
  writeImage(dir, image);
  const r = spawnSync(process.execPath, [CLI, 'restore', '-D', dir], {
    encoding: 'utf8',
    env: { ...process.env, TMPDIR: dir, PCR_FAULT: `leak@${image.rootPid}:finalize` },
  });
  assert.equal(r.status, 1, r.stderr);
  assert.match(
    r.stdout,
    /verification: FAILED, 1 difference:\n  - task \d+ fd \d+: .*not in the image/,
  );
  assert.deepEqual(readdirSync(dir), ['pidfd-cr.img']);
});

test('a TMPDIR too long for socket paths: the run directory goes to /tmp instead', async (t) => {
  const { image, dir } = await buildAndDump(t, benchmark);
  writeImage(dir, image);
  const long = join(dir, 'x'.repeat(100));
  mkdirSync(long);
  const r = spawnSync(process.execPath, [CLI, 'restore', '-D', dir], {
    encoding: 'utf8',
    env: { ...process.env, TMPDIR: long },
  });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '');
  assert.deepEqual(readdirSync(long), []);
  await assert.rejects(restoreImage(image, { runDirParent: long }), {
    code: 'PCR_ERR_USAGE',
    message: /socket paths under it would exceed 107 bytes/,
  });
  assert.deepEqual(readdirSync(long), []);
});

test('the pid map is not written when verification finds differences', async (t) => {
  const { image, dir } = await buildAndDump(t, sharedScm);
  writeImage(dir, image);
  const mapPath = join(dir, 'map.json');
  const r = spawnSync(process.execPath, [CLI, 'restore', '-D', dir, '--pid-map', mapPath], {
    encoding: 'utf8',
    env: { ...process.env, TMPDIR: dir, PCR_FAULT: `leak@${image.rootPid}:finalize` },
  });
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stdout, /verification: FAILED/);
  assert.equal(existsSync(mapPath), false);
  assert.deepEqual(readdirSync(dir), ['pidfd-cr.img']);
});

test('demo builds, dumps, restores and verifies the demo tree, and cleans up', (t) => {
  // Seen from outside: its temporary directories are gone, and nothing of it is left
  // below us (a subreaper, so orphans would come back here).
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  const tmp = mkdtempSync(join(tmpdir(), 'pcr-demo-test-'));
  t.after(() => rmSync(tmp, { recursive: true, force: true }));
  const before = new Set(descendantsOf(process.pid));
  const r = spawnSync(process.execPath, [CLI, 'demo'], {
    encoding: 'utf8',
    env: { ...process.env, TMPDIR: tmp },
  });
  assert.deepEqual(readdirSync(tmp), []);
  assert.deepEqual(
    descendantsOf(process.pid).filter((p) => !before.has(p)),
    [],
  );
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /dumped it to .*pidfd-cr\.img/);
  assert.match(r.stdout, /pid map \(dumped -> restored\):/);
  const count = (t: TaskSpec): [number, number] =>
    (t.children ?? [])
      .map(count)
      .reduce(([a, b], [c, d]) => [a + c, b + d], [1, t.pidfds?.length ?? 0]);
  const [tasks, fds] = count(DEMO_TREE.root);
  assert.ok(
    r.stdout.includes(`verification: OK, ${fds} pidfds in ${tasks} tasks match the image`),
    r.stdout,
  );
  assert.match(r.stdout, /restored tree taken down\ndemo tree removed\n$/);
});
