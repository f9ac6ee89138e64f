/**
 * The log (docs/cli.md "Logs"), separate from the trace: `restore --log-file F -v`
 * writes JSON lines saying each step (plan, spawn, the phases' start and end, verify,
 * hold, teardown) in order; `-v` alone writes readable lines on stderr; `dump` logs
 * freeze, walk, read, classify, thaw and write; a bad level is a usage error, an
 * unusable file a clear one with its errno. An embedder's own pino gets the same steps
 * through the library option `logger`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { writeImage } from '../../src/image/store.js';
import { restoreImage } from '../../src/restore/restore-image.js';
import { sharedScm, deadStatuses } from '../fixtures/scenarios.js';
import { buildAndDump } from '../helpers/restore-run.js';
import { CLI } from '../fixtures/dump-helpers.js';

const cli = (args: string[], env: NodeJS.ProcessEnv = process.env) =>
  spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env, timeout: 60_000 });

interface Record_ {
  level: number;
  time: number;
  pid: number;
  msg: string;
  step?: string;
  [k: string]: unknown;
}

const records = (path: string): Record_[] =>
  readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Record_);

/** The messages that say each step of a restore that verified, in this order. */
const RESTORE_STEPS = [
  /^plan: \d+ tasks?, /,
  /^spawn: start$/,
  /^spawn: root worker, pid \d+$/,
  /^spawn: done$/,
  // One GO: the phases, within them the restore's phase as the tasks' STEPs move it (a
  // quick task sends none: open-alive, where GO puts every task, is always there).
  /^phases: start$/,
  /^phase open-alive: start$/,
  /^phase open-alive: done$/,
  /^phases: done$/,
  /^verify: 0 differences from the image$/,
];

/** Each pattern matches a message, in order (other messages may come between). */
function assertInOrder(msgs: string[], patterns: RegExp[]): void {
  let at = 0;
  for (const p of patterns) {
    const i = msgs.findIndex((m, k) => k >= at && p.test(m));
    assert.ok(i >= 0, `no ${p} after message ${at}:\n${msgs.join('\n')}`);
    at = i + 1;
  }
}

test('restore --log-file F -v: JSON lines, one per step, in order; stdout and stderr unchanged', async (t) => {
  const { image, dir } = await buildAndDump(t, sharedScm);
  writeImage(dir, image);
  const log = join(dir, 'restore.log');
  const r = cli(['restore', '-D', dir, '--log-file', log, '-v'], { ...process.env, TMPDIR: dir });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '', 'the log goes to the file only');
  assert.match(r.stdout, /verification: OK/);
  const recs = records(log);
  for (const x of recs) {
    assert.equal(typeof x.time, 'number');
    assert.equal(x.pid, r.pid, `pid is the command's: ${JSON.stringify(x)}`);
    assert.equal(x.cmd, 'restore');
    assert.ok(x.level >= 30, 'info and above with -v');
  }
  const msgs = recs.map((x) => x.msg);
  assertInOrder(msgs, [
    ...RESTORE_STEPS,
    /^teardown: start$/,
    /^teardown: done$/,
    /^restore done$/,
  ]);
  const plan = recs.find((x) => x.step === 'plan')!;
  assert.equal(plan.tasks, image.tasks.length);
  const phase = recs.find((x) => x.msg === 'phases: done')!;
  assert.equal(typeof phase.ms, 'number');
  // Appended, not truncated: a second run adds its records.
  const again = cli(['restore', '-D', dir, '--log-file', log], { ...process.env, TMPDIR: dir });
  assert.equal(again.status, 0, again.stderr);
  const both = records(log);
  assert.equal(both.filter((x) => x.step === 'plan').length, 2);
  assert.deepEqual(
    readdirSync(dir).sort(),
    ['pidfd-cr.img', 'restore.log'],
    'nothing else left in the directory',
  );
});

test('restore --hold -v: readable lines on stderr for hold and teardown; -vv adds debug', async (t) => {
  const { image, dir } = await buildAndDump(t, deadStatuses);
  writeImage(dir, image);
  const child = spawn(process.execPath, [CLI, 'restore', '-D', dir, '--hold', '-vv'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, TMPDIR: dir },
  });
  t.after(() => child.kill('SIGKILL'));
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  for (let i = 0; i < 3000 && !out.includes('holding the restored tree'); i++) await sleep(10);
  assert.match(out, /holding the restored tree/);
  for (let i = 0; i < 300 && !/hold: /.test(err); i++) await sleep(10);
  child.kill('SIGTERM');
  assert.equal(await exited, 0, err);
  const lines = err.split('\n').filter((l) => l !== '');
  for (const l of lines)
    assert.match(
      l,
      /^\d\d:\d\d:\d\d\.\d{3} (INFO |DEBUG|WARN |ERROR) \S/,
      `one readable line: ${l}`,
    );
  const msgs = lines.map((l) => l.slice(19).replace(/ {2}\S+=.*$/, ''));
  assertInOrder(msgs, [
    ...RESTORE_STEPS.slice(0, -1),
    /^hold: the restored tree is held until the signal ends it$/,
    /^hold: done$/,
    /^teardown: start$/,
    /^teardown: done$/,
    /^restore done$/,
  ]);
  assert.ok(
    lines.some((l) => / DEBUG spawn: task \d+ registered \(pid \d+\)/.test(l)),
    'debug records with -vv',
  );
  assert.ok(
    lines.some((l) => /step=phases ms=\d+/.test(l)),
    'fields as key=value',
  );
});

test('dump --log-file F -vv: freeze, walk, read (per task), classify, thaw, write', async (t) => {
  const { tree, dir } = await buildAndDump(t, sharedScm);
  const img = join(dir, 'img');
  mkdirSync(img);
  const log = join(dir, 'dump.log');
  const r = cli(['dump', '-t', String(tree.rootPid), '-D', img, '--log-file', log, '-vv']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '');
  const recs = records(log);
  assertInOrder(
    recs.map((x) => x.msg),
    [
      new RegExp(`^freeze: seizing the tree of ${tree.rootPid} \\(ptrace\\)$`),
      /^walk: 3 tasks frozen$/,
      new RegExp(`^read: task ${tree.rootPid}: 3 pidfds$`),
      /^read: 3 tasks, 7 pidfds$/,
      /^classify: 3 open files, 3 targets$/,
      /^thaw: tree released$/,
      new RegExp(`^write: ${img}/pidfd-cr.img$`),
    ],
  );
  assert.ok(
    recs.some((x) => x.level === 20),
    'debug records with -vv',
  );
  const classify = recs.find((x) => x.step === 'classify')!;
  assert.deepEqual(classify.kinds, { 'in-tree-alive': 2, dead: 1 });
});

test('--log-level bogus is a usage error; an unusable --log-file names the errno', async (t) => {
  const { image, dir } = await buildAndDump(t, sharedScm);
  writeImage(dir, image);
  const bogus = cli(['restore', '-D', dir, '--log-level', 'bogus']);
  assert.equal(bogus.status, 2);
  assert.equal(
    bogus.stderr,
    "pidfd-cr: restore: --log-level must be one of silent, fatal, error, warn, info, debug, trace, got 'bogus'\n",
  );
  const isDir = cli(['restore', '-D', dir, '--log-file', dir]);
  assert.equal(isDir.status, 2);
  assert.equal(isDir.stderr, `pidfd-cr: restore: --log-file ${dir}: cannot open it: EISDIR (21)\n`);
  const missing = join(dir, 'no', 'such.log');
  const noDir = cli(['dump', '-t', '1', '-D', dir, '--log-file', missing]);
  assert.equal(noDir.status, 2);
  assert.equal(noDir.stderr, `pidfd-cr: dump: --log-file ${missing}: cannot open it: ENOENT (2)\n`);
  assert.deepEqual(readdirSync(dir), ['pidfd-cr.img'], 'nothing restored, nothing left');
  // silent: no log at all, even with a file named
  const silent = cli(
    ['restore', '-D', dir, '--log-level', 'silent', '--log-file', join(dir, 's.log')],
    {
      ...process.env,
      TMPDIR: dir,
    },
  );
  assert.equal(silent.status, 0, silent.stderr);
  assert.equal(silent.stderr, '');
  assert.deepEqual(readdirSync(dir), ['pidfd-cr.img']);
});

test('library: an embedder passes its own pino as `logger` and gets the steps', async (t) => {
  const { image, dir } = await buildAndDump(t, sharedScm);
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  const logger = pino({ level: 'info' }, sink);
  const result = await restoreImage(image, { runDirParent: dir, logger });
  assert.equal(result.ok, true);
  const msgs = lines.map((l) => (JSON.parse(l) as { msg: string }).msg);
  assertInOrder(msgs, [...RESTORE_STEPS, /^teardown: done$/, /^restore done$/]);
});

test('demo --log-file F: the log of its dump and of its restore', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pcr-log-demo-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const log = join(dir, 'demo.log');
  const r = cli(['demo', '--log-file', log], { ...process.env, TMPDIR: dir });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '');
  const recs = records(log);
  assert.ok(recs.every((x) => x.cmd === 'demo' && x.level === 30));
  assertInOrder(
    recs.map((x) => x.msg),
    [/^freeze: /, /^classify: /, /^write: /, ...RESTORE_STEPS, /^restore done$/],
  );
  assert.deepEqual(readdirSync(dir), ['demo.log']);
});
