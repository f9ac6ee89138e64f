import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  chmodSync,
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  rmSync,
  statSync,
  unlinkSync,
  writeFileSync,
  constants,
  ftruncateSync,
} from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImageError, PcrError } from '../../src/errors.js';
import { IMAGE_FILE_NAME, MAX_IMAGE_BYTES, readImage, writeImage } from '../../src/image/store.js';
import { encodeImage } from '../../src/image/codec.js';
import { sampleImage } from '../fixtures/image-sample.js';

function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'pcr-store-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function pcrError(fn: () => unknown): PcrError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof PcrError, `not a PcrError: ${(err as Error)?.stack}`);
    return err;
  }
  assert.fail('no error');
}

test('writeImage then readImage gives the image back; the file is 0600 and alone', (t) => {
  const dir = tempDir(t);
  const path = writeImage(dir, sampleImage());
  assert.equal(path, join(dir, IMAGE_FILE_NAME));
  assert.equal(statSync(path).mode & 0o777, 0o600);
  assert.deepEqual(readdirSync(dir), [IMAGE_FILE_NAME]);
  assert.deepStrictEqual(readImage(dir), sampleImage());
});

test('an existing image is kept without force and replaced with it', (t) => {
  const dir = tempDir(t);
  writeImage(dir, sampleImage());
  const other = sampleImage();
  other.host.hostname = 'other';
  const err = pcrError(() => writeImage(dir, other));
  assert.equal(err.code, 'PCR_ERR_IMAGE_EXISTS');
  assert.match(err.message, /pidfd-cr\.img already exists/);
  assert.equal(readImage(dir).host.hostname, 'testhost');
  writeImage(dir, other, { force: true });
  assert.equal(readImage(dir).host.hostname, 'other');
  assert.deepEqual(readdirSync(dir), [IMAGE_FILE_NAME]);
});

test('a missing DIR, or a file as DIR, is PCR_ERR_IMAGE_DIR naming path and errno', (t) => {
  const dir = tempDir(t);
  const missing = join(dir, 'nope');
  for (const fn of [() => writeImage(missing, sampleImage()), () => readImage(missing)]) {
    const err = pcrError(fn);
    assert.equal(err.code, 'PCR_ERR_IMAGE_DIR');
    assert.ok(err.message.includes(missing), err.message);
    assert.match(err.message, /ENOENT/);
  }
  const file = join(dir, 'plain');
  writeFileSync(file, 'x');
  for (const fn of [() => writeImage(file, sampleImage()), () => readImage(file)]) {
    const err = pcrError(fn);
    assert.equal(err.code, 'PCR_ERR_IMAGE_DIR');
    assert.match(err.message, /not a directory \(ENOTDIR\)/);
  }
});

/** A directory this process cannot create files in, found by trying; null if none. */
function unwritableDir(base: string): string | null {
  const ro = join(base, 'ro');
  mkdirSync(ro, 0o500);
  chmodSync(ro, 0o500);
  for (const candidate of [ro, '/sys']) {
    const probe = join(candidate, '.pcr-probe');
    try {
      closeSync(openSync(probe, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600));
      unlinkSync(probe);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') return candidate;
    }
  }
  return null;
}

test('a DIR that is not writable is PCR_ERR_IMAGE_DIR with the errno', (t) => {
  const dir = tempDir(t);
  const ro = unwritableDir(dir);
  if (!ro) return t.skip('no unwritable directory found (privileged and /sys writable)');
  const err = pcrError(() => writeImage(ro, sampleImage()));
  assert.equal(err.code, 'PCR_ERR_IMAGE_DIR');
  assert.ok(err.message.includes(ro));
  assert.match(err.message, /EACCES|EPERM|EROFS/);
});

test('a failure after the temp file was made removes it', (t) => {
  const dir = tempDir(t);
  // A non-empty directory where the image goes: rename(2) onto it fails (EISDIR).
  mkdirSync(join(dir, IMAGE_FILE_NAME));
  writeFileSync(join(dir, IMAGE_FILE_NAME, 'x'), '');
  const err = pcrError(() => writeImage(dir, sampleImage(), { force: true }));
  assert.equal(err.code, 'PCR_ERR_IMAGE_DIR');
  assert.match(err.message, /EISDIR|ENOTEMPTY|EEXIST/);
  assert.deepEqual(readdirSync(dir), [IMAGE_FILE_NAME]);
});

test('an invalid image is refused before anything is written', (t) => {
  const dir = tempDir(t);
  const image = sampleImage();
  image.rootPid = 4242;
  assert.throws(() => writeImage(dir, image), { name: 'ImageError', where: 'root_pid' });
  assert.deepEqual(readdirSync(dir), []);
});

test('readImage of a DIR without an image says so', (t) => {
  const dir = tempDir(t);
  const err = pcrError(() => readImage(dir));
  assert.equal(err.code, 'PCR_ERR_IMAGE_DIR');
  assert.equal(err.message, `no image in ${dir} (pidfd-cr.img not found)`);
});

test('readImage of a corrupt image is an ImageError naming field and file', (t) => {
  const dir = tempDir(t);
  const bytes = encodeImage(sampleImage());
  bytes[bytes.length - 3]! ^= 0xff;
  writeFileSync(join(dir, IMAGE_FILE_NAME), bytes);
  const err = pcrError(() => readImage(dir));
  assert.ok(err instanceof ImageError);
  assert.equal(err.where, 'header.crc32');
  assert.ok(err.message.includes(join(dir, IMAGE_FILE_NAME)), err.message);
});

test('readImage refuses a FIFO or an oversized file as the image without reading it', (t) => {
  const dir = tempDir(t);
  const path = join(dir, IMAGE_FILE_NAME);
  execFileSync('mkfifo', [path]); // opened O_NONBLOCK: no writer needed, no hang
  let err = pcrError(() => readImage(dir));
  assert.ok(err instanceof ImageError);
  assert.equal(err.message, `file: not a regular file (in ${path})`);
  unlinkSync(path);
  const fd = openSync(path, 'w');
  ftruncateSync(fd, MAX_IMAGE_BYTES + 1); // sparse: no 64 MiB written
  closeSync(fd);
  err = pcrError(() => readImage(dir));
  assert.ok(err instanceof ImageError);
  assert.equal(err.where, 'file');
  assert.match(err.message, new RegExp(`^file: ${MAX_IMAGE_BYTES + 1} bytes, more than`));
});
