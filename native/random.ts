/**
 * Random bytes straight from the kernel (getrandom(2), the source OpenSSL seeds from):
 * the worker's auth nonce without `node:crypto`, whose loading alone costs a worker
 * ≈ 7 ms of CPU (docs/restore.md, "Performance").
 */
import { libc, check } from './libc.js';

export function kernelRandom(n: number): Buffer {
  const buf = Buffer.alloc(n);
  // Reads of up to 256 bytes are never short; longer ones may be (signals), so loop.
  for (let got = 0; got < n;) {
    got += check(libc.getrandom(buf.subarray(got), n - got, 0), 'getrandom');
  }
  return buf;
}
