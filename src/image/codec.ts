/**
 * The image file format (docs/image-format.md): a 20-byte header — magic `PIDFDCR\0`,
 * u32 LE format version, u32 LE payload length, u32 LE CRC32 of the payload — and then
 * one protobuf `pidfdcr.image.Image` message. Decoding validates everything (validate.ts)
 * and every failure is an ImageError naming the field at fault.
 */
import { crc32 } from './crc32.js';
import { pidfdcr } from '../../gen/pb.js';
import { ImageError } from '../errors.js';
import { FORMAT_VERSION, type Image } from '../model/image.js';
import { imageFromProto, imageToProto } from './proto-map.js';
import { validateImage, type ValidationLimits } from './validate.js';
import { readFdLimit } from './limits.js';

export const MAGIC = Buffer.from('PIDFDCR\0', 'latin1');
export const HEADER_BYTES = 20;
/** Format versions this reader understands. */
export const SUPPORTED_VERSIONS: readonly number[] = [FORMAT_VERSION];

const OFF_VERSION = 8;
const OFF_LENGTH = 12;
const OFF_CRC = 16;

export interface DecodeOptions {
  /** Limits for validation; by default read from the running kernel. */
  limits?: ValidationLimits;
}

const kernelLimits = (): ValidationLimits => ({ fdLimit: readFdLimit() });

/**
 * Validates an image held in memory (e.g. handed to restoreImage by an embedding tool,
 * which may have built or changed it): the same rules as reading one, and an object that
 * is not an image at all is an ImageError too, never a TypeError.
 */
export function checkImage(image: unknown, opts: DecodeOptions = {}): asserts image is Image {
  if (typeof image !== 'object' || image === null) {
    throw new ImageError('image', `${image === null ? 'null' : typeof image} is not an image`);
  }
  try {
    validateImage(image as Image, opts.limits ?? kernelLimits());
  } catch (err) {
    if (err instanceof ImageError) throw err;
    throw new ImageError('image', `malformed: ${(err as Error).message}`, { cause: err });
  }
}

/** Validates `image` and encodes it as a complete image file (header + payload). */
export function encodeImage(image: Image, opts: DecodeOptions = {}): Buffer {
  validateImage(image, opts.limits ?? kernelLimits());
  return encodeImageUnchecked(image);
}

/**
 * Encodes without validating: for tests that need invalid images. The version written is
 * `image.formatVersion`, so a test can also forge a future version.
 */
export function encodeImageUnchecked(image: Image): Buffer {
  const payload = pidfdcr.image.Image.encode(imageToProto(image)).finish();
  return frame(
    Buffer.from(payload.buffer, payload.byteOffset, payload.length),
    image.formatVersion,
  );
}

/** Header + payload for a raw protobuf payload. */
export function frame(payload: Buffer, version: number = FORMAT_VERSION): Buffer {
  const header = Buffer.alloc(HEADER_BYTES);
  MAGIC.copy(header, 0);
  header.writeUInt32LE(version, OFF_VERSION);
  header.writeUInt32LE(payload.length, OFF_LENGTH);
  header.writeUInt32LE(crc32(payload) >>> 0, OFF_CRC);
  return Buffer.concat([header, payload]);
}

/**
 * Decodes and fully validates an image file's bytes. `file` (the path it was read from)
 * is added to error messages; `ImageError.where` always names the part at fault.
 */
export function decodeImage(buf: Buffer, file?: string, opts: DecodeOptions = {}): Image {
  try {
    const { version, payload } = unframe(buf);
    const image = imageFromProto(decodePayload(payload), version);
    validateImage(image, opts.limits ?? kernelLimits());
    return image;
  } catch (err) {
    if (file !== undefined && err instanceof ImageError) throw inFile(err, file);
    throw err;
  }
}

function inFile(err: ImageError, file: string): ImageError {
  const detail = err.message.slice(err.where.length + 2);
  return new ImageError(err.where, `${detail} (in ${file})`, { cause: err.cause });
}

/** Checks the header and returns the version and the payload it frames. */
export function unframe(buf: Buffer): { version: number; payload: Buffer } {
  if (buf.length < HEADER_BYTES) {
    throw new ImageError('header', `truncated: ${buf.length} of ${HEADER_BYTES} header bytes`);
  }
  if (!buf.subarray(0, MAGIC.length).equals(MAGIC)) {
    throw new ImageError('header.magic', 'not a pidfd-cr image (bad magic)');
  }
  const version = buf.readUInt32LE(OFF_VERSION);
  if (!SUPPORTED_VERSIONS.includes(version)) {
    const known = SUPPORTED_VERSIONS.join(', ');
    const why = version > FORMAT_VERSION ? 'written by a newer pidfd-cr' : 'unknown';
    throw new ImageError(
      'header.version',
      `format version ${version} is ${why}; this reader supports version ${known}`,
    );
  }
  const length = buf.readUInt32LE(OFF_LENGTH);
  const have = buf.length - HEADER_BYTES;
  if (have < length) {
    throw new ImageError('payload', `truncated: ${have} of ${length} payload bytes`);
  }
  if (have > length) {
    throw new ImageError('header.length', `says ${length} payload bytes, the file has ${have}`);
  }
  const payload = buf.subarray(HEADER_BYTES);
  const want = buf.readUInt32LE(OFF_CRC);
  const got = crc32(payload) >>> 0;
  if (want !== got) {
    throw new ImageError(
      'header.crc32',
      `CRC32 mismatch: header ${hex(want)}, payload ${hex(got)}`,
    );
  }
  return { version, payload };
}

const hex = (n: number): string => `0x${n.toString(16).padStart(8, '0')}`;

function decodePayload(payload: Buffer): pidfdcr.image.Image {
  try {
    return pidfdcr.image.Image.decode(payload);
  } catch (err) {
    throw new ImageError('payload', `protobuf decode failed: ${(err as Error).message}`, {
      cause: err,
    });
  }
}
