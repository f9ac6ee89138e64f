/**
 * The auth socket's messages (ToAuth) round-trip, a ToAuth that says nothing is refused
 * by name, and PCR_FAULT start-up kinds parse only with phase spawn. Pure.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeAuth, decodeAuth } from '../../src/protocol/wire.js';
import type { AuthMessage } from '../../src/protocol/messages.js';
import { PcrError } from '../../src/errors.js';
import { parseFault } from '../../src/actors/fault.js';
import { looseIdentity } from '../../src/worker/startup/failure.js';

test('auth messages round-trip: proof and start-up failure', () => {
  const msgs: AuthMessage[] = [
    { type: 'AUTH_PROOF', pid: 4242, nonce: Uint8Array.from({ length: 16 }, (_, i) => i * 13) },
    {
      type: 'STARTUP_FAILED',
      pid: 4242,
      failure: {
        code: 'PCR_ERR_SYSCALL',
        message: 'bind/listen (/r/fd-4242.sock) failed: EADDRINUSE (98)',
        phase: 'spawn',
        syscall: 'bind/listen',
        errno: 98,
        errnoName: 'EADDRINUSE',
      },
    },
    {
      type: 'STARTUP_FAILED',
      pid: 7,
      failure: { code: 'PCR_ERR_USAGE', message: 'PCR_WORKER is malformed', phase: 'spawn' },
    },
  ];
  for (const m of msgs) assert.deepEqual(decodeAuth(encodeAuth(m)), m);
});

test('an empty ToAuth is refused by name', () => {
  assert.throws(
    () => decodeAuth(new Uint8Array()),
    (e: unknown) => e instanceof PcrError && /a ToAuth message with no message/.test(e.message),
  );
});

test('PCR_FAULT start-up kinds: only with phase spawn', () => {
  assert.deepEqual(parseFault('bind-taken@12:spawn'), {
    kind: 'bind-taken',
    pid: 12,
    phase: 'spawn',
  });
  assert.deepEqual(parseFault('sigstop@12:spawn'), { kind: 'sigstop', pid: 12, phase: 'spawn' });
  assert.throws(
    () => parseFault('sigstop@12:dead'),
    (e: unknown) =>
      e instanceof PcrError &&
      e.code === 'PCR_ERR_USAGE' &&
      /sigstop acts only in phase spawn/.test(e.message),
  );
});

test('a malformed PCR_WORKER still gives what it can for the one-line report', () => {
  assert.deepEqual(looseIdentity('{"dumpedPid":5,"rundir":"/r","stderrUsable":false}'), {
    dumpedPid: 5,
    rundir: '/r',
    stderrUsable: false,
  });
  assert.deepEqual(looseIdentity('{"dumpedPid":"5"}'), { stderrUsable: true });
  assert.deepEqual(looseIdentity('{not json'), { stderrUsable: true });
  assert.deepEqual(looseIdentity(undefined), { stderrUsable: true });
});
