/**
 * The swrk service's pure parts: which bytes are a request, and how an error becomes a
 * response (code, exit status, and for a failed system call its name and errno).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pidfdcr } from '../../gen/pb.js';
import { PcrError, SyscallError } from '../../src/errors.js';
import { decodeRequest, errorResponse } from '../../src/swrk/service.js';

const pb = pidfdcr.swrk;

test('decodeRequest takes every known type and refuses garbage, type 0 and unknown types', () => {
  for (const type of [1, 2, 3, 4, 5, 6]) {
    const bytes = pb.Request.encode({ type: type as never, notifyAbort: 'x' }).finish();
    assert.equal(decodeRequest(bytes).type, type);
  }
  const refuse = (bytes: Uint8Array, message: RegExp) =>
    assert.throws(
      () => decodeRequest(bytes),
      (e: unknown) =>
        e instanceof PcrError && e.code === 'PCR_ERR_USAGE' && message.test(e.message),
    );
  refuse(Uint8Array.of(0xff, 0xff, 0xff), /^malformed request: /);
  refuse(new Uint8Array(0), /unknown type 0/);
  refuse(pb.Request.encode({ type: 77 as never }).finish(), /unknown type 77/);
  refuse(Uint8Array.of(0x12, 0x05, 0x01), /^malformed request: /); // a truncated sub-message
});

test('errorResponse keeps the code, its exit status and the system call', () => {
  const sys = errorResponse(2, new SyscallError('pidfd_open', 3, 'ESRCH', 'pid 4'));
  assert.deepEqual(sys, {
    type: 2,
    success: false,
    error: {
      code: 'PCR_ERR_SYSCALL',
      exitStatus: 12,
      message: 'pidfd_open (pid 4) failed: ESRCH (3)',
      syscall: 'pidfd_open',
      errnum: 3,
      errnoName: 'ESRCH',
    },
  });
  const hook = errorResponse(2, new PcrError('PCR_ERR_HOOK_ABORTED', 'no'));
  assert.deepEqual(hook.error, { code: 'PCR_ERR_HOOK_ABORTED', exitStatus: 23, message: 'no' });
  const plain = errorResponse(4, new TypeError('boom'));
  assert.equal(plain.error?.code, 'PCR_ERR_INTERNAL');
  assert.equal(plain.error?.exitStatus, 70);
  assert.match(plain.error?.message ?? '', /boom/);
  // Every error response encodes to a non-empty message (SEQPACKET needs a byte).
  assert.ok(pb.Response.encode(errorResponse(0, new Error('x'))).finish().length > 0);
});
