/**
 * `restore --exec … -d --status-fd N` on real trees (criu restore -d's "ready"): the byte
 * comes once every task exec'd and the command detaches, and no exec'd program keeps the
 * fd (the reader gets EOF while the tree runs on); a tree that differs from the image or
 * an exec that fails closes it without the byte. --status-fd with --exec but without -d
 * is a usage error. Nothing may be left.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import {
  chmodSync,
  closeSync,
  existsSync,
  openSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  realpathSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { writeImage } from '../../src/image/store.js';
import { alive } from '../fixtures/scenarios.js';
import { CLI } from '../fixtures/dump-helpers.js';
import { buildAndDump, killAll, waitGone } from '../helpers/restore-run.js';
import { exists, procState } from '../helpers/proc-view.js';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  /** What came on fd 3 before its EOF. */
  status: Buffer;
}

/**
 * Runs the CLI with a pipe as fd 3, reading it to EOF (TMPDIR = dir: no run dir left).
 * stdout and stderr are files: the exec'd programs inherit the CLI's stderr.
 */
async function runWithStatusFd(
  args: string[],
  dir: string,
  env: NodeJS.ProcessEnv = {},
): Promise<Run> {
  const out = join(dir, `out-${++runs}`);
  const err = join(dir, `err-${runs}`);
  const outFd = openSync(out, 'w');
  const errFd = openSync(err, 'w');
  const child = spawn(process.execPath, [CLI, 'restore', '-D', dir, ...args], {
    stdio: ['ignore', outFd, errFd, 'pipe'],
    env: { ...process.env, TMPDIR: dir, ...env },
  });
  closeSync(outFd);
  closeSync(errFd);
  const exit = once(child, 'exit');
  const fd3 = child.stdio[3] as Readable;
  const bytes: Buffer[] = [];
  fd3.on('data', (d: Buffer) => bytes.push(d));
  // Bounded: a process that kept a copy of fd 3 would keep EOF away for ever.
  const limit = setTimeout(
    () => fd3.destroy(new Error('fd 3 never reached EOF: a process keeps a copy')),
    60_000,
  );
  await once(fd3, 'end').finally(() => clearTimeout(limit));
  const [code] = (await exit) as [number | null];
  const stdout = readFileSync(out, 'utf8');
  const stderr = readFileSync(err, 'utf8');
  return { code, stdout, stderr, status: Buffer.concat(bytes) } as Run;
}
let runs = 0;

const readMap = (path: string) =>
  Object.values(JSON.parse(readFileSync(path, 'utf8')) as Record<string, number>);

function assertNoRundir(dir: string): void {
  assert.deepEqual(
    readdirSync(dir).filter((f) => f.startsWith('pcr-')),
    [],
    'no run directory left',
  );
}

test('--exec -d --status-fd: the byte once every task exec’d, then EOF while the tree runs on', async (t) => {
  const { image, dir } = await buildAndDump(t, alive);
  writeImage(dir, image);
  const mapPath = join(dir, 'pids.json');
  t.after(async () => {
    await killAll(existsSync(mapPath) ? readMap(mapPath) : []);
  });
  const sleep = realpathSync('/bin/sleep');
  const run = await runWithStatusFd(
    ['--pid-map', mapPath, '-d', '--status-fd', '3', '--exec', JSON.stringify([sleep, '1000'])],
    dir,
  );
  const everyone = readMap(mapPath);
  assert.equal(run.code, 0, run.stderr);
  assert.deepEqual(run.status, Buffer.of(0), 'the status byte');
  assert.match(run.stdout, /^detached: every task runs its --exec program/m);
  assertNoRundir(dir);
  // EOF came although the tree runs on: none of the exec'd programs holds the fd.
  const live = everyone.filter((p) => procState(p) !== 'Z');
  assert.equal(live.length, image.tasks.filter((x) => x.state !== 'zombie').length);
  for (const pid of live) {
    assert.ok(exists(pid), `task ${pid} runs on`);
    assert.equal(readlinkSync(`/proc/${pid}/exe`), sleep, `task ${pid} exec'd`);
  }
  for (const pid of everyone) process.kill(pid, 'SIGKILL');
  assert.deepEqual(await waitGone(everyone), []);
});

test('--exec -d --status-fd: differences or a failed exec close the fd without the byte; nothing left', async (t) => {
  const { image, dir } = await buildAndDump(t, alive);
  writeImage(dir, image);
  const mapPath = join(dir, 'pids.json');
  // The root keeps one extra pidfd after finalize: verification reports it, no hand-off.
  const differs = await runWithStatusFd(
    ['--pid-map', mapPath, '-d', '--status-fd', '3', '--exec', '["/bin/sleep","1000"]'],
    dir,
    { PCR_FAULT: `leak@${image.rootPid}:finalize` },
  );
  assert.equal(differs.code, 1, differs.stderr);
  assert.equal(differs.status.length, 0, 'no status byte');
  assert.match(differs.stdout, /^verification: FAILED/m);
  // No --pid-map for a tree that differs: the printed map says which pids it had.
  const printed = [...differs.stdout.matchAll(/^ +\d+ -> (\d+) /gm)].map((m) => Number(m[1]));
  assert.equal(printed.length, image.tasks.length, differs.stdout);
  assert.deepEqual(await waitGone(printed), []);

  // Executable but not a program: execve fails (ENOEXEC) in the workers, after verify.
  const junk = join(dir, 'junk');
  writeFileSync(junk, Buffer.from([0x7f, 0x00, 0x01, 0x02, 0x03]));
  chmodSync(junk, 0o755);
  const failed = await runWithStatusFd(
    ['--pid-map', mapPath, '-d', '--status-fd', '3', '--exec', JSON.stringify([junk])],
    dir,
  );
  assert.equal(failed.code, 27, failed.stderr);
  assert.equal(failed.status.length, 0, 'no status byte');
  assert.match(failed.stderr, /execve .*junk: ENOEXEC/);
  assert.deepEqual(await waitGone(readMap(mapPath)), []);
  assertNoRundir(dir);

  // --exec without -d: the command runs until the root's program exits, no "ready".
  const usage = await runWithStatusFd(['--status-fd', '3', '--exec', '["/bin/true"]'], dir);
  assert.equal(usage.code, 2);
  assert.equal(usage.status.length, 0);
  assert.equal(usage.stdout, '');
  assert.equal(
    usage.stderr,
    'pidfd-cr: restore: --status-fd needs --hold or --exec with -d (the byte says the held or detached tree is ready)\n',
  );
});
