import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pidfdcr } from '../../gen/pb.js';
import { ImageError } from '../../src/errors.js';
import { HEADER_BYTES, MAGIC, decodeImage, encodeImage, frame } from '../../src/image/codec.js';
import { bigintToU64, imageToProto, u64ToBigint } from '../../src/image/proto-map.js';
import type { Image } from '../../src/model/image.js';
import { BIG_INO, INO_2_53_PLUS_1, sampleImage } from '../fixtures/image-sample.js';

const LIMITS = { limits: { fdLimit: 1048576 } };

function assertImageError(fn: () => unknown, where: string, text?: RegExp): ImageError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof ImageError, `expected an ImageError at ${where}, got ${caught}`);
  assert.equal(caught.where, where, caught.message);
  assert.equal(caught.code, 'PCR_ERR_IMAGE_INVALID');
  if (text) assert.match(caught.message, text);
  return caught;
}

test('a rich image round-trips exactly (every target kind, optional fields, u64 inos)', () => {
  const image = sampleImage();
  const back = decodeImage(encodeImage(image, LIMITS), undefined, LIMITS);
  assert.deepStrictEqual(back, image);
  assert.equal(back.targets[2]!.ino, BIG_INO);
  assert.equal(back.targets[3]!.ino, INO_2_53_PLUS_1);
  assert.equal(back.targets[2]!.exitCgroupId, (1n << 62n) + 7n);
  assert.equal(back.targets[2]!.exitStatus, 7 << 8);
  assert.ok(!('exitStatus' in back.targets[3]!), 'an absent optional field stays absent');
  assert.ok(!('exitStatus' in back.tasks[0]!));
  assert.equal(back.tasks[2]!.exitStatus, 3 << 8);
});

test('an exit status of 0 is present, not absent', () => {
  const image = sampleImage();
  image.tasks[2]!.exitStatus = 0;
  image.targets[2]!.exitStatus = 0;
  const back = decodeImage(encodeImage(image, LIMITS), undefined, LIMITS);
  assert.equal(back.tasks[2]!.exitStatus, 0);
  assert.equal(back.targets[2]!.exitStatus, 0);
});

test('uint64 conversion is exact at the edges', () => {
  for (const v of [0n, 1n, (1n << 32n) - 1n, 1n << 32n, (1n << 53n) + 3n, (1n << 64n) - 1n]) {
    assert.equal(u64ToBigint(bigintToU64(v, 'x'), 'x'), v);
    const image = sampleImage();
    image.files[0]!.ino = v;
    image.files[3]!.ino = v;
    image.targets[0]!.ino = v;
    const back = decodeImage(encodeImage(image, LIMITS), undefined, LIMITS);
    assert.equal(back.targets[0]!.ino, v);
    assert.equal(back.files[3]!.ino, v);
  }
  assertImageError(() => bigintToU64(1n << 64n, 'targets[0].ino'), 'targets[0].ino');
  assertImageError(() => bigintToU64(-1n, 'files[0].ino'), 'files[0].ino');
});

test('the header is magic, version, length and CRC32, little-endian', () => {
  const buf = encodeImage(sampleImage(), LIMITS);
  assert.deepEqual(buf.subarray(0, 8), MAGIC);
  assert.equal(MAGIC.toString('latin1'), 'PIDFDCR\0');
  assert.equal(buf.readUInt32LE(8), 1);
  assert.equal(buf.readUInt32LE(12), buf.length - HEADER_BYTES);
  assert.equal(buf.readUInt32LE(16), crc32Table(buf.subarray(HEADER_BYTES)));
});

/** An independent CRC-32 (IEEE, reflected) to check the header against. */
function crc32Table(data: Buffer): number {
  let crc = 0xffffffff;
  for (const byte of data) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0xedb88320 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

test('container failures name the header field at fault', () => {
  const good = encodeImage(sampleImage(), LIMITS);
  const dec = (b: Buffer) => () => decodeImage(b, undefined, LIMITS);
  assertImageError(dec(good.subarray(0, 0)), 'header', /truncated: 0 of 20/);
  assertImageError(dec(good.subarray(0, 19)), 'header', /truncated/);
  const badMagic = Buffer.from(good);
  badMagic[0] = 0x50 ^ 0xff;
  assertImageError(dec(badMagic), 'header.magic', /not a pidfd-cr image/);
  for (const version of [0, 2, 0xffffffff]) {
    const b = Buffer.from(good);
    b.writeUInt32LE(version, 8);
    assertImageError(dec(b), 'header.version', /supports version 1/);
  }
  const future = Buffer.from(good);
  future.writeUInt32LE(2, 8);
  assertImageError(dec(future), 'header.version', /newer pidfd-cr/);
  assertImageError(dec(good.subarray(0, good.length - 1)), 'payload', /truncated/);
  assertImageError(dec(Buffer.concat([good, Buffer.from([0])])), 'header.length');
  const flipped = Buffer.from(good);
  flipped[HEADER_BYTES + 5]! ^= 0x01;
  assertImageError(dec(flipped), 'header.crc32', /CRC32 mismatch/);
  assertImageError(dec(frame(Buffer.from([0x0a, 0x7f]))), 'payload', /protobuf decode failed/);
  assertImageError(dec(frame(Buffer.from([0x0f]))), 'payload', /protobuf decode failed/);
});

test('the file name is added to the message when given', () => {
  const bad = encodeImage(sampleImage(), LIMITS).subarray(0, 4);
  const err = assertImageError(() => decodeImage(bad, '/x/pidfd-cr.img', LIMITS), 'header');
  assert.match(err.message, /^header: truncated.*\(in \/x\/pidfd-cr\.img\)$/);
});

test('encodeImage refuses an invalid image', () => {
  const image = sampleImage();
  image.files[0]!.flags |= 0o2000000; // its fds read as not close-on-exec: impossible
  assertImageError(() => encodeImage(image, LIMITS), 'tasks[0].fds[0].cloexec');
});

// ---------------------------------------------------------------- fuzz

/** mulberry32: a small seeded PRNG, so a failure can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Mutator = (buf: Buffer, rnd: () => number) => Buffer;
const int = (rnd: () => number, n: number) => Math.floor(rnd() * n);

const flipBytes: Mutator = (buf, rnd) => {
  const b = Buffer.from(buf);
  const n = 1 + int(rnd, 4);
  for (let i = 0; i < n; i++) b[int(rnd, b.length)]! ^= 1 + int(rnd, 255);
  return b;
};
const truncate: Mutator = (buf, rnd) => buf.subarray(0, int(rnd, buf.length));
/** Mutates only the payload and fixes the header, to reach the protobuf decoder and validation. */
const payloadOnly =
  (inner: Mutator): Mutator =>
  (buf, rnd) =>
    frame(inner(buf.subarray(HEADER_BYTES), rnd));
const insertBytes: Mutator = (buf, rnd) => {
  const at = int(rnd, buf.length);
  const extra = Buffer.from(Array.from({ length: 1 + int(rnd, 8) }, () => int(rnd, 256)));
  return Buffer.concat([buf.subarray(0, at), extra, buf.subarray(at)]);
};

test('fuzz: damaged images only ever throw ImageError', () => {
  const good = encodeImage(sampleImage(), LIMITS);
  const mutators: [string, Mutator][] = [
    ['flip', flipBytes],
    ['truncate', truncate],
    ['payload flip', payloadOnly(flipBytes)],
    ['payload truncate', payloadOnly(truncate)],
    ['payload insert', payloadOnly(insertBytes)],
  ];
  const wheres = new Map<string, number>();
  let accepted = 0;
  for (const [name, mutate] of mutators) {
    for (let seed = 1; seed <= 1500; seed++) {
      const damaged = mutate(good, prng(seed));
      let image: Image;
      try {
        image = decodeImage(damaged, undefined, LIMITS);
      } catch (err) {
        if (!(err instanceof ImageError)) {
          assert.fail(`${name} seed ${seed}: ${(err as Error)?.stack ?? String(err)}`);
        }
        const field = err.where.replace(/\[\d+\]/g, '[]');
        wheres.set(field, (wheres.get(field) ?? 0) + 1);
        continue;
      }
      accepted++;
      // Whatever is accepted must be a valid image: it encodes again.
      assert.doesNotThrow(() => encodeImage(image, LIMITS), `${name} seed ${seed}`);
    }
  }
  // The fuzz reached past the container into the decoder and the semantic checks.
  assert.ok((wheres.get('payload') ?? 0) > 0, 'protobuf decode errors were seen');
  const semantic = [...wheres.keys()].filter((w) => !w.startsWith('header') && w !== 'payload');
  assert.ok(semantic.length >= 5, `semantic checks were reached: ${semantic.join(', ')}`);
  assert.ok(accepted < 7500);
});

test('fuzz: random bytes behind a valid header only ever throw ImageError', () => {
  const rnd = prng(42);
  for (let i = 0; i < 2000; i++) {
    const payload = Buffer.from(Array.from({ length: int(rnd, 64) }, () => int(rnd, 256)));
    try {
      decodeImage(frame(payload), undefined, LIMITS);
    } catch (err) {
      assert.ok(err instanceof ImageError, `case ${i}: ${(err as Error)?.stack ?? String(err)}`);
    }
  }
});

test('an image from the generated code with every field set decodes to the model', () => {
  const m = imageToProto(sampleImage());
  const buf = frame(Buffer.from(pidfdcr.image.Image.encode(m).finish()));
  assert.deepStrictEqual(decodeImage(buf, undefined, LIMITS), sampleImage());
});
