/**
 * The package's executable (dist/src/cli/bin.cjs) runs the bundled CLI (cli.cjs, with a
 * code cache per command; `dump` from its own bundle, dump.cjs): it must do exactly what the unbundled main.js does — the same
 * image from the same tree, the same one-line failures and exit statuses — and write
 * its code cache only after a successful command, not after a help text.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildTree } from '../../src/testing/index.js';
import { readImage } from '../../src/image/store.js';
import { imageToJson } from '../../src/image/show.js';
import { CLI, tempDir } from '../fixtures/dump-helpers.js';
import { sharedScm } from '../fixtures/scenarios.js';

const BIN = fileURLToPath(new URL('../../src/cli/bin.cjs', import.meta.url));
const BUNDLE = fileURLToPath(new URL('../../src/cli/cli.cjs', import.meta.url));
const DUMP_BUNDLE = fileURLToPath(new URL('../../src/cli/dump.cjs', import.meta.url));

function run(
  entry: string,
  args: string[],
): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [entry, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The image of DIR as `show --json` gives it, without the time it was dumped. */
function imageOf(dir: string): unknown {
  const json = imageToJson(readImage(dir)) as { host: { dumpTime?: string; dumpTimeMs?: number } };
  delete json.host.dumpTime;
  delete json.host.dumpTimeMs;
  return json;
}

test('the bundled executable dumps the same image as main.js, and fails the same way', async (t) => {
  const tree = await buildTree(sharedScm);
  t.after(() => tree.destroy());
  const a = tempDir();
  const b = tempDir();
  t.after(() => {
    a.remove();
    b.remove();
  });
  rmSync(`${DUMP_BUNDLE}.cache`, { force: true });
  const bundled = run(BIN, ['dump', '-t', String(tree.rootPid), '-D', a.dir]);
  const plain = run(CLI, ['dump', '-t', String(tree.rootPid), '-D', b.dir]);
  assert.equal(bundled.status, 0, bundled.stderr);
  assert.equal(plain.status, 0, plain.stderr);
  assert.equal(bundled.stdout.replace(a.dir, 'DIR'), plain.stdout.replace(b.dir, 'DIR'));
  assert.deepEqual(imageOf(a.dir), imageOf(b.dir));
  // It ran the dump's own bundle (start.cts), which then wrote its code cache.
  assert.equal(existsSync(`${DUMP_BUNDLE}.cache`), true, 'dump.cjs wrote no code cache');

  // Expected failures: one line, the documented status, the same from both.
  for (const args of [
    ['dump', '-t', String(tree.rootPid), '-D', a.dir], // exists: 7
    ['dump', '-t', '0', '-D', a.dir], // usage: 2
    ['show', '-D', join(a.dir, 'missing')],
    ['no-such-command'],
  ]) {
    const x = run(BIN, args);
    const y = run(CLI, args);
    assert.notEqual(x.status, 0, args.join(' '));
    assert.deepEqual(
      { status: x.status, stderr: x.stderr },
      { status: y.status, stderr: y.stderr },
    );
    assert.match(x.stderr.split('\n')[0]!, /^pidfd-cr: /);
  }
});

test('a command writes its own code cache once it succeeded, a help text none', (t) => {
  const { dir, remove } = tempDir();
  t.after(remove);
  const cache = (command: string): string => `${BUNDLE}.${command}.cache`;
  rmSync(cache('show'), { force: true });
  assert.equal(run(BIN, ['show', '--help']).status, 0);
  assert.equal(existsSync(cache('show')), false, 'a help text wrote a cache');
  assert.equal(run(BIN, ['show', '-D', dir]).status, 6); // no image: fails, no cache
  assert.equal(existsSync(cache('show')), false, 'a failed command wrote a cache');
  rmSync(cache('other'), { force: true });
  const version = run(BIN, ['--version']);
  assert.equal(version.status, 0);
  assert.match(version.stdout, /^\d+\.\d+\.\d+\n$/);
  assert.equal(existsSync(cache('other')), true, 'no cache after a successful command');
  // And it is used: the next run gives the same answer from it.
  assert.deepEqual(run(BIN, ['--version']), version);
});
