/**
 * CRC-32 (IEEE 802.3, the polynomial of zlib's crc32) of the image payload, in JS:
 * `node:zlib` costs a dump ≈ 1.5 ms of CPU to load (with node:stream) for one checksum of
 * a few KB (docs/restore.md "Dump speed"). Equal to zlib.crc32 (test/unit/image-crc32).
 */
let table: Int32Array | undefined;

function makeTable(): Int32Array {
  const t = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  return t;
}

/** The CRC-32 of `bytes`, an unsigned 32-bit number. */
export function crc32(bytes: Uint8Array): number {
  const t = (table ??= makeTable());
  let c = -1;
  for (let i = 0; i < bytes.length; i++) c = t[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}
