/** Wait status words (src/plan/status.ts): decoding, describing, a shell's $?. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeWaitStatus, describeWaitStatus, shellStatus } from '../../src/plan/status.js';

test('a shell reports an exit code as itself and a signal as 128 + the signal', () => {
  for (const [status, shell] of [
    [0, 0],
    [3 << 8, 3],
    [255 << 8, 255],
    [9, 137],
    [15, 143],
    [11 | 0x80, 139], // the core bit does not change $?
  ] as const) {
    assert.equal(shellStatus(status), shell, `status 0x${status.toString(16)}`);
  }
});

test('wait statuses decode and read as a person would say them', () => {
  assert.deepEqual(decodeWaitStatus(3 << 8), { kind: 'exited', code: 3 });
  assert.deepEqual(decodeWaitStatus(11 | 0x80), { kind: 'signaled', signal: 11, core: true });
  assert.deepEqual(decodeWaitStatus(0x137f), { kind: 'invalid' }); // stopped, not a death
  assert.equal(describeWaitStatus(9), 'killed by signal 9');
  assert.equal(describeWaitStatus(7 << 8), 'exit 7');
  assert.equal(describeWaitStatus(-1), 'invalid wait status 0x-1');
});
