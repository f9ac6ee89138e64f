/**
 * `pidfd-cr restore` output options and summary wording, through the compiled CLI: bad
 * --pid-map / --trace-file paths are usage errors (exit 2) before anything is restored,
 * and counts are singular or plural.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeImage, IMAGE_FILE_NAME } from '../../src/image/store.js';
import { count } from '../../src/text.js';
import { formatVerification } from '../../src/cli/commands/restore.js';
import { sampleImage } from '../fixtures/image-sample.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

function restore(...args: string[]) {
  return spawnSync(process.execPath, [MAIN, 'restore', ...args], { encoding: 'utf8' });
}

function imageDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'pcr-restore-args-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeImage(dir, sampleImage());
  return dir;
}

test('an output path that is empty, the image itself, or unwritable is refused by name', (t) => {
  const dir = imageDir(t);
  const img = join(dir, IMAGE_FILE_NAME);
  const before = readFileSync(img);
  symlinkSync(img, join(dir, 'link'));
  const cases: Array<[string, string, RegExp]> = [
    ['--pid-map', '', /^pidfd-cr: restore: --pid-map needs a file name, got ''\n$/],
    ['--trace-file', '', /^pidfd-cr: restore: --trace-file needs a file name, got ''\n$/],
    ['--pid-map', img, /: is the image file\n$/],
    ['--trace-file', img, /: is the image file\n$/],
    ['--pid-map', join(dir, 'link'), /: is the image file\n$/],
    // root passes access(W_OK) on /proc; creating a file there fails.
    ['--pid-map', '/proc/nope.json', /ENOENT/],
    ['--pid-map', dir, /: is a directory\n$/],
  ];
  for (const [option, path, message] of cases) {
    const r = restore('-D', dir, option, path);
    assert.equal(r.status, 2, `${option} '${path}': ${r.stderr}`);
    assert.match(r.stderr, message);
    if (path !== '') assert.ok(r.stderr.startsWith(`pidfd-cr: restore: ${option} ${path}: `));
    assert.equal(r.stdout, '', 'nothing restored');
  }
  const same = restore('-D', dir, '--pid-map', join(dir, 'out'), '--trace-file', `${dir}/./out`);
  assert.equal(same.status, 2);
  assert.equal(
    same.stderr,
    `pidfd-cr: restore: --pid-map and --trace-file name the same file: ${join(dir, 'out')}\n`,
  );
  assert.deepEqual(readFileSync(img), before, 'the image is untouched');
  assert.deepEqual(readdirSync(dir).sort(), ['link', IMAGE_FILE_NAME], 'no probe file left');
});

test('a parseArgs error that spans lines is one line', () => {
  const r = restore('-D', '--hold');
  assert.equal(r.status, 2);
  assert.match(r.stderr, /^pidfd-cr: restore: Option '-D' argument is ambiguous\. Did you .*\n$/);
  assert.equal(r.stderr.split('\n').length, 2, r.stderr);
});

test('counts agree with their number', () => {
  assert.equal(count(1, 'task'), '1 task');
  assert.equal(count(0, 'task'), '0 tasks');
  assert.equal(count(2, 'open pidfd file'), '2 open pidfd files');
  const one = { ...sampleImage() };
  one.tasks = one.tasks.slice(0, 1);
  assert.match(formatVerification(one, []), /^verification: OK, \d+ pidfds? in 1 task match/);
  assert.match(
    formatVerification(one, [{ message: 'x' } as never]),
    /^verification: FAILED, 1 difference:\n {2}- x\n$/,
  );
});
