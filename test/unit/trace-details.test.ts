/** detailsOf: the peers of fd transfers reach the trace details. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { detailsOf } from '../../src/protocol/trace.js';

test('fd transfer outputs name their peers (dumped pids)', () => {
  const sent = detailsOf(
    { type: 'xstate.done.actor.sendFds', output: { messages: 2, peers: [7, 9] } },
    { phase: 'open-alive' },
  );
  assert.deepEqual(sent, { phase: 'open-alive', peer: [7, 9] });
  const received = detailsOf(
    {
      type: 'xstate.done.actor.recvFds',
      output: { files: [{ fileId: 3, fd: 4 }], helperFds: [], peers: [5] },
    },
    { phase: 'dead' },
  );
  assert.deepEqual(received, { phase: 'dead', fd: [4], files: [3], peer: [5] });
});
