/**
 * `restore --pidfile F`: the restored root's pid, written once verified (checked against
 * the pid map and, while the tree is held, from /proc: the root worker is the command's
 * child); bad paths are usage errors before anything is restored.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { writeImage } from '../../src/image/store.js';
import { benchmark } from '../fixtures/scenarios.js';
import { CLI, cli } from '../fixtures/dump-helpers.js';
import { buildAndDump, waitGone } from '../helpers/restore-run.js';
import { descendantsOf } from '../helpers/proc-view.js';

test('restore --hold --pidfile: the file holds the restored root, a child of the command', async (t) => {
  const { image, dir } = await buildAndDump(t, benchmark);
  writeImage(dir, image);
  const pidfile = join(dir, 'root.pid');
  const mapPath = join(dir, 'pids.json');
  const child = spawn(
    process.execPath,
    [CLI, 'restore', '-D', dir, '--hold', '--pidfile', pidfile, '--pid-map', mapPath],
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
  assert.match(out, /^verification: OK/m);
  const text = readFileSync(pidfile, 'utf8');
  assert.match(text, /^\d+\n$/);
  const root = Number(text);
  const map = JSON.parse(readFileSync(mapPath, 'utf8')) as Record<string, number>;
  assert.equal(root, map[String(image.rootPid)]);
  const stat = readFileSync(`/proc/${root}/stat`, 'utf8');
  const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  assert.equal(ppid, child.pid, 'the restored root is the command child');
  const everyone = descendantsOf(child.pid!);
  child.kill('SIGTERM');
  const [code] = await exited;
  assert.equal(code, 0);
  assert.deepEqual(await waitGone(everyone), []);
  // No temporary file left next to it.
  assert.deepEqual(readdirSync(dir).sort(), ['pidfd-cr.img', 'pids.json', 'root.pid']);
});

test('bad --pidfile paths are usage errors naming the option, before anything is restored', async (t) => {
  const { image, dir } = await buildAndDump(t, benchmark);
  writeImage(dir, image);
  const missing = join(dir, 'no-such-dir', 'root.pid');
  const cases: Array<[string[], RegExp]> = [
    [['--pidfile', missing], /^pidfd-cr: restore: --pidfile .*no-such-dir.*ENOENT/],
    [['--pidfile', dir], /^pidfd-cr: restore: --pidfile .*: is a directory$/],
    [['--pidfile', ''], /^pidfd-cr: restore: --pidfile needs a file name, got ''$/],
    [['--pidfile', join(dir, 'pidfd-cr.img')], /--pidfile .*: is the image file$/],
    [
      ['--pidfile', join(dir, 'x'), '--pid-map', join(dir, 'x')],
      /^pidfd-cr: restore: --pidfile and --pid-map name the same file: /,
    ],
    [
      ['--pidfile', join(dir, 'y'), '--trace-file', join(dir, 'y')],
      /^pidfd-cr: restore: --pidfile and --trace-file name the same file: /,
    ],
  ];
  for (const [args, message] of cases) {
    const r = cli(['restore', '-D', dir, ...args]);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.equal(r.stdout, '', args.join(' '));
    assert.match(r.stderr.trimEnd(), message, args.join(' '));
    assert.equal(r.stderr.trimEnd().split('\n').length, 1, r.stderr);
  }
  assert.deepEqual(readdirSync(dir), ['pidfd-cr.img']);
});
