/**
 * The image on disk: DIR/pidfd-cr.img. Writing is atomic — a temp file created in DIR
 * (O_EXCL, mode 0600), fsync'ed, then renamed (or, without force, hard-linked so an image
 * that appeared meanwhile is never overwritten), then DIR is fsync'ed. The temp file is
 * removed on every error.
 */
import {
  closeSync,
  constants,
  fstatSync,
  fsyncSync,
  linkSync,
  openSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
// getrandom(2) for the temp name: node:crypto would cost the dump ≈ 5 ms of CPU to load.
import { kernelRandom } from '../../native/index.js';
import { ImageError, PcrError } from '../errors.js';
import type { Image } from '../model/image.js';
import { decodeImage, encodeImage } from './codec.js';

export const IMAGE_FILE_NAME = 'pidfd-cr.img';

export interface WriteOptions {
  /** Replace an existing image. */
  force?: boolean;
}

/** Path of the image file in `dir`. */
export const imagePath = (dir: string): string => join(dir, IMAGE_FILE_NAME);

function dirError(dir: string, what: string, err: unknown): PcrError {
  const e = err as NodeJS.ErrnoException;
  const errno = e.code ? `${e.code}${e.syscall ? ` (${e.syscall})` : ''}` : String(err);
  return new PcrError('PCR_ERR_IMAGE_DIR', `image directory ${dir}: ${what}: ${errno}`, {
    cause: err,
  });
}

const errCode = (err: unknown): string | undefined => (err as NodeJS.ErrnoException).code;

function checkDir(dir: string): void {
  let st;
  try {
    st = statSync(dir);
  } catch (err) {
    throw dirError(dir, 'cannot use it', err);
  }
  if (!st.isDirectory()) {
    throw new PcrError('PCR_ERR_IMAGE_DIR', `image directory ${dir}: not a directory (ENOTDIR)`);
  }
}

function imageExists(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch (err) {
    if (errCode(err) === 'ENOENT') return false;
    throw err;
  }
}

function existsError(path: string): PcrError {
  return new PcrError('PCR_ERR_IMAGE_EXISTS', `${path} already exists (use --force to replace it)`);
}

/** Validates, encodes and atomically writes `image` to DIR/pidfd-cr.img; returns the path. */
export function writeImage(dir: string, image: Image, opts: WriteOptions = {}): string {
  checkDir(dir);
  const path = imagePath(dir);
  if (!opts.force && imageExists(path)) throw existsError(path);
  const bytes = encodeImage(image);
  const tmp = join(dir, `.${IMAGE_FILE_NAME}.${process.pid}.${kernelRandom(6).toString('hex')}`);
  let fd: number;
  try {
    fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
  } catch (err) {
    throw dirError(dir, 'cannot create a file in it', err);
  }
  try {
    writeAll(fd, bytes);
    fsyncSync(fd);
    closeSync(fd);
    fd = -1;
    publish(tmp, path, opts.force ?? false);
    syncDir(dir);
    return path;
  } catch (err) {
    if (fd !== -1) closeSync(fd);
    unlinkQuiet(tmp);
    if (err instanceof PcrError) throw err;
    throw dirError(dir, `cannot write ${IMAGE_FILE_NAME}`, err);
  }
}

function writeAll(fd: number, bytes: Buffer): void {
  for (let off = 0; off < bytes.length;) off += writeSync(fd, bytes, off);
}

/** rename (replaces) with force; otherwise link, which fails if the image appeared. */
function publish(tmp: string, path: string, force: boolean): void {
  if (force) {
    renameSync(tmp, path);
    return;
  }
  try {
    linkSync(tmp, path);
  } catch (err) {
    if (errCode(err) === 'EEXIST') throw existsError(path);
    throw err;
  }
  unlinkSync(tmp);
}

function syncDir(dir: string): void {
  const fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function unlinkQuiet(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}

/**
 * The largest image read (64 MiB): far above what a dump of the largest restorable tree
 * writes (DEFAULT_LIMITS: 1024 processes, 2^20 pidfds, ~20 bytes each), so a bigger file
 * is not an image and is not read into memory.
 */
export const MAX_IMAGE_BYTES = 64 * 1024 * 1024;

/** Reads and fully validates DIR/pidfd-cr.img. */
export function readImage(dir: string): Image {
  checkDir(dir);
  const path = imagePath(dir);
  let fd: number;
  try {
    // O_NONBLOCK: a FIFO planted as the image must not block the open.
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    if (errCode(err) === 'ENOENT') {
      throw new PcrError('PCR_ERR_IMAGE_DIR', `no image in ${dir} (${IMAGE_FILE_NAME} not found)`, {
        cause: err,
      });
    }
    throw dirError(dir, `cannot read ${IMAGE_FILE_NAME}`, err);
  }
  try {
    return decodeImage(readRegular(fd, path), path);
  } finally {
    closeSync(fd);
  }
}

function readRegular(fd: number, path: string): Buffer {
  const st = fstatSync(fd);
  if (!st.isFile()) throw new ImageError('file', `not a regular file (in ${path})`);
  if (st.size > MAX_IMAGE_BYTES) {
    throw new ImageError(
      'file',
      `${st.size} bytes, more than the ${MAX_IMAGE_BYTES} an image may have (in ${path})`,
    );
  }
  return readFileSync(fd);
}
