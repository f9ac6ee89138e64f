/**
 * The worker-side trace events on the wire: a TRACE message with `kind` and `data`
 * round-trips (and one without them decodes as before); the message id travels in the
 * SCM_RIGHTS payload (FdTransfer) and an old payload without one still decodes; the
 * coordinator accepts only the notes a worker may record (parseWorkerNote).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { WorkerMessage } from '../../src/protocol/messages.js';
import {
  decodeFdTransfer,
  decodeToCoordinator,
  encodeFdTransfer,
  encodeToCoordinator,
} from '../../src/protocol/wire.js';
import { parseWorkerNote } from '../../src/protocol/trace.js';
import { pidfdcr } from '../../gen/pb.js';

test('a TRACE with kind and data round-trips; one without them has neither', () => {
  const note: WorkerMessage = {
    type: 'TRACE',
    pid: 42,
    trace: {
      machine: 'task:42',
      from: '',
      to: '',
      event: 'pcr.fd-transfer',
      details: '{}',
      timeMs: 1700000000000.25,
      kind: 'fd-transfer',
      data: '{"transfer":{"id":"ab"}}',
    },
  };
  assert.deepEqual(decodeToCoordinator(encodeToCoordinator(note)), note);
  const state: WorkerMessage = {
    type: 'TRACE',
    pid: 42,
    trace: {
      machine: 'task:42',
      from: 'ready',
      to: 'sending',
      event: 'E',
      details: '{}',
      timeMs: 1,
    },
  };
  const back = decodeToCoordinator(encodeToCoordinator(state));
  assert.deepEqual(back, state);
  assert.ok(!('kind' in (back as { trace: object }).trace));
});

test('the message id travels in the FdTransfer payload; an old payload has none', () => {
  const t = { from: 7, phase: 'dead' as const, fileIds: [1, 2], messageId: '0123456789abcdef' };
  assert.deepEqual(decodeFdTransfer(encodeFdTransfer(t)), t);
  // What a sender from before message ids wrote: fields 1-3 only.
  const old = pidfdcr.protocol.FdTransfer.encode({ from: 7, phase: 3, fileIds: [1] }).finish();
  assert.deepEqual(decodeFdTransfer(old), { from: 7, phase: 'dead', fileIds: [1] });
});

test('parseWorkerNote: temp spawn/exit, zombie exit and fd transfers; nothing else', () => {
  const temp = {
    process: { action: 'spawn', role: 'temp', pid: 9, ppid: 8, ino: '77', creator: 42 },
    details: { phase: 'dead' },
  };
  assert.deepEqual(parseWorkerNote('process', JSON.stringify(temp), 5), {
    kind: 'process',
    time: 5,
    ...temp,
  });
  const zombie = { process: { action: 'exit', role: 'zombie', pid: 9, ppid: 8, waitStatus: 768 } };
  assert.equal(typeof parseWorkerNote('process', JSON.stringify(zombie), 5), 'object');
  const transfer = {
    transfer: { id: 'ab', side: 'recv', sender: 1, receiver: 2, files: [3], fds: [4] },
  };
  assert.deepEqual(parseWorkerNote('fd-transfer', JSON.stringify(transfer), 6), {
    kind: 'fd-transfer',
    time: 6,
    ...transfer,
  });
  // What a worker may not claim, or cannot mean.
  const refused: Array<[string, unknown]> = [
    ['process', { process: { action: 'spawn', role: 'worker', pid: 9, ppid: 8 } }],
    ['process', { process: { action: 'spawn', role: 'zombie', pid: 9, ppid: 8 } }],
    ['process', { process: { action: 'exit', role: 'coordinator', pid: 9, ppid: 8 } }],
    ['process', { process: { action: 'exit', role: 'temp', pid: '9', ppid: 8 } }],
    [
      'fd-transfer',
      { transfer: { id: 1, side: 'send', sender: 1, receiver: 2, files: [], fds: [] } },
    ],
    [
      'fd-transfer',
      { transfer: { id: 'a', side: 'both', sender: 1, receiver: 2, files: [], fds: [] } },
    ],
    [
      'fd-transfer',
      { transfer: { id: 'a', side: 'send', sender: 1, receiver: 2, files: ['x'], fds: [] } },
    ],
    ['register', { register: { task: 1, pid: 2 } }],
    ['frame-ignored', { ignored: { reason: 'x' } }],
  ];
  for (const [kind, data] of refused) {
    const r = parseWorkerNote(kind, JSON.stringify(data), 1);
    assert.equal(typeof r, 'string', `${kind} ${JSON.stringify(data)}`);
  }
  assert.match(parseWorkerNote('process', '{not json', 1) as string, /not JSON/);
});
