/** The image checksum (src/image/crc32.ts) is zlib's CRC-32, byte for byte. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { crc32 as zlibCrc32 } from 'node:zlib';
import { crc32 } from '../../src/image/crc32.js';

test('crc32 is the IEEE CRC-32: the check value, the empty input, and zlib on random data', () => {
  assert.equal(crc32(Buffer.from('123456789')), 0xcbf43926);
  assert.equal(crc32(new Uint8Array(0)), 0);
  for (const size of [1, 2, 3, 7, 64, 255, 256, 1000, 65_537]) {
    const bytes = randomBytes(size);
    assert.equal(crc32(bytes), zlibCrc32(bytes) >>> 0, `${size} bytes`);
  }
  assert.equal(crc32(Buffer.alloc(4096, 0xff)), zlibCrc32(Buffer.alloc(4096, 0xff)) >>> 0);
});
