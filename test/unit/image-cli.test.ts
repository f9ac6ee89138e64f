/** `pidfd-cr show` as a user runs it: the compiled CLI in a child process. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeImage, IMAGE_FILE_NAME } from '../../src/image/store.js';
import { encodeImage } from '../../src/image/codec.js';
import { imageToJson } from '../../src/image/show.js';
import { sampleImage } from '../fixtures/image-sample.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

function show(...args: string[]) {
  const env = { ...process.env };
  delete env.NODE_EXTRA_CA_CERTS;
  const r = spawnSync(process.execPath, [MAIN, 'show', ...args], { encoding: 'utf8', env });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'pcr-show-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('show prints the tree of a good image', (t) => {
  const dir = tempDir(t);
  writeImage(dir, sampleImage());
  const r = show('-D', dir);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '');
  assert.match(r.stdout, /^pidfd-cr image, format 1/);
  assert.match(r.stdout, /^ {2}200 child \[running R\]$/m);
  assert.match(r.stdout, /dead, exited 7$/m);
});

test('show --json prints the documented JSON form', (t) => {
  const dir = tempDir(t);
  writeImage(dir, sampleImage());
  const r = show('--dir', dir, '--json');
  assert.equal(r.status, 0, r.stderr);
  assert.deepStrictEqual(
    JSON.parse(r.stdout),
    JSON.parse(JSON.stringify(imageToJson(sampleImage()))),
  );
});

test('show of a missing DIR exits 6 naming it', (t) => {
  const dir = join(tempDir(t), 'missing');
  const r = show('-D', dir);
  assert.equal(r.status, 6);
  assert.equal(r.stdout, '');
  assert.equal(r.stderr, `pidfd-cr: image directory ${dir}: cannot use it: ENOENT (stat)\n`);
});

test('show of a DIR with no image exits 6', (t) => {
  const dir = tempDir(t);
  const r = show('-D', dir);
  assert.equal(r.status, 6);
  assert.equal(r.stderr, `pidfd-cr: no image in ${dir} (pidfd-cr.img not found)\n`);
});

test('show of a corrupt image exits 8 with the field at fault, no stack', (t) => {
  const dir = tempDir(t);
  const bytes = encodeImage(sampleImage());
  bytes.writeUInt32LE(9, 8);
  writeFileSync(join(dir, IMAGE_FILE_NAME), bytes);
  const r = show('-D', dir);
  assert.equal(r.status, 8);
  assert.equal(
    r.stderr,
    `pidfd-cr: header.version: format version 9 is written by a newer pidfd-cr; ` +
      `this reader supports version 1 (in ${join(dir, IMAGE_FILE_NAME)})\n`,
  );
});

test('show without -D, or with an unknown option, is a usage error (exit 2)', () => {
  assert.equal(show().status, 2);
  assert.match(show().stderr, /-D DIR is required/);
  assert.equal(show('--bogus').status, 2);
  const help = show('--help');
  assert.equal(help.status, 0);
  assert.match(help.stdout, /usage: pidfd-cr show -D DIR \[--json\]/);
});
