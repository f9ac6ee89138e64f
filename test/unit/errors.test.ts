import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EXIT_CODES, PcrError, exitCodeFor, SyscallError } from '../../src/errors.js';

test('every error code has a distinct exit status', () => {
  const statuses = Object.values(EXIT_CODES);
  assert.equal(new Set(statuses).size, statuses.length);
  assert.ok(statuses.every((s) => s > 0 && s < 128));
});

test('exitCodeFor maps PcrErrors by code and anything else to internal', () => {
  assert.equal(exitCodeFor(new PcrError('PCR_ERR_USAGE', 'x')), 2);
  assert.equal(exitCodeFor(new SyscallError('kcmp', 1, 'EPERM')), EXIT_CODES.PCR_ERR_SYSCALL);
  assert.equal(exitCodeFor(new Error('boom')), 70);
});

test('SyscallError names the syscall and the errno', () => {
  const e = new SyscallError('pidfd_open', 3, 'ESRCH', 'pid 42');
  assert.equal(e.message, 'pidfd_open (pid 42) failed: ESRCH (3)');
  assert.equal(e.code, 'PCR_ERR_SYSCALL');
});
