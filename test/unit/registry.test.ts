/**
 * The HELLO registry (pure, proofs given by a fake auth socket): a HELLO counts only
 * with a kernel proof for its restored pid and nonce and once its expectation agrees;
 * forged, repeated or contradicting ones throw a PcrError naming the task and the pid;
 * start-up failures are judged by the sender's kernel pid.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Registry } from '../../src/coordinator/registry.js';
import type { Proof } from '../../src/coordinator/auth-listener.js';
import type { Failure } from '../../src/protocol/messages.js';
import { PcrError } from '../../src/errors.js';

const nonceOf = (pid: number): Uint8Array => new Uint8Array(16).fill(pid % 256);
const inoOf = (pid: number): bigint => BigInt(pid) * 1000n;

/** Every pid in `pids` proved (dumped, its nonce); as AuthListener.proofOf would say. */
function proofs(entries: Array<[pid: number, dumped: number]>) {
  const map = new Map<number, Proof>(
    entries.map(([pid, dumped]) => [pid, { pid, ino: inoOf(pid), dumped, nonce: nonceOf(pid) }]),
  );
  return { proofOf: (pid: number) => map.get(pid) };
}

const hello = (pid: number, restoredPid: number, nonce = nonceOf(restoredPid)) => ({
  type: 'WORKER_HELLO' as const,
  pid,
  restoredPid,
  nonce,
});

const refusal = (pattern: RegExp) => (err: unknown) =>
  err instanceof PcrError && err.code === 'PCR_ERR_RESTORE' && pattern.test(err.message);

test('registry: a proven HELLO with the expected restored pid is accepted, once', () => {
  const r = new Registry(proofs([[101, 1]]));
  assert.deepEqual(r.expect([{ dumped: 1, restored: 101 }]), []);
  assert.deepEqual(r.hello(hello(1, 101)), [hello(1, 101)]);
  assert.equal(r.isAccepted(1), true);
  assert.equal(r.restoredOf(1), 101);
  assert.throws(() => r.hello(hello(1, 101)), refusal(/task 1: a second WORKER_HELLO/));
});

test('registry: a proven HELLO before its expectation waits for it', () => {
  const r = new Registry(proofs([[202, 2]]));
  assert.deepEqual(r.hello(hello(2, 202)), []);
  assert.equal(r.isAccepted(2), false, 'nothing else from 2 is listened to yet');
  assert.deepEqual(r.expect([{ dumped: 2, restored: 202 }]), [hello(2, 202)]);
  assert.deepEqual(r.accepted(), [2]);
});

test('registry: a HELLO whose claimed pid proved nothing is forged', () => {
  const r = new Registry(proofs([]));
  r.expect([{ dumped: 1, restored: 101 }]);
  assert.throws(
    () => r.hello(hello(1, 101)),
    refusal(/task 1: refused a forged WORKER_HELLO claiming pid 101/),
  );
  assert.equal(r.isAccepted(1), false);
});

test('registry: the right pid with the wrong nonce, or another task, is forged', () => {
  const r = new Registry(proofs([[101, 1]]));
  r.expect([{ dumped: 1, restored: 101 }]);
  assert.throws(() => r.hello(hello(1, 101, nonceOf(7))), refusal(/forged WORKER_HELLO/));
  assert.throws(() => r.hello(hello(1, 101, new Uint8Array())), refusal(/forged/));
  assert.throws(() => r.hello({ ...hello(1, 101), nonce: undefined }), refusal(/forged/));
  // pid 101 proved it plays task 1, not task 3
  assert.throws(() => r.hello(hello(3, 101)), refusal(/task 3: refused a forged/));
  assert.deepEqual(r.accepted(), []);
});

test('registry: a proven process that is not the expected worker is named', () => {
  const r = new Registry(proofs([[999, 3]]));
  assert.deepEqual(r.hello(hello(3, 999)), [], 'waits for its expectation');
  assert.throws(
    () => r.expect([{ dumped: 3, restored: 303 }]),
    refusal(/task 3: refused a WORKER_HELLO from pid 999, which is not its worker \(pid 303/),
  );
  assert.equal(r.isAccepted(3), false);
});

test('registry: a start-up failure counts only from the task worker', () => {
  const failure: Failure = { code: 'PCR_ERR_SYSCALL', message: 'bind failed', phase: 'spawn' };
  const r = new Registry(proofs([]));
  assert.deepEqual(r.startupFailure(404, 4, failure), [], 'waits for its expectation');
  assert.deepEqual(r.expect([{ dumped: 4, restored: 404 }]), [
    { type: 'WORKER_FAILED', pid: 4, failure },
  ]);
  r.expect([{ dumped: 5, restored: 505 }]);
  assert.throws(
    () => r.startupFailure(666, 5, failure),
    refusal(/task 5: refused a start-up failure from pid 666/),
  );
});

test('registry: a proof left by an earlier process with the worker pid (pid reuse) is refused', () => {
  // Process 101 proved (dumped 1, nonce), exited; the worker got pid 101 again later.
  const workerIno = inoOf(101) + 1n;
  const r = new Registry(proofs([[101, 1]]), (dumped) => (dumped === 1 ? workerIno : undefined));
  r.expect([{ dumped: 1, restored: 101 }]);
  assert.throws(
    () => r.hello(hello(1, 101)),
    refusal(
      /task 1: refused a WORKER_HELLO proven by another process that had pid 101 \(pidfs ino 101000; the worker's is 101001\)/,
    ),
  );
  const same = new Registry(proofs([[101, 1]]), () => inoOf(101));
  same.expect([{ dumped: 1, restored: 101 }]);
  assert.deepEqual(same.hello(hello(1, 101)), [hello(1, 101)]);
});
