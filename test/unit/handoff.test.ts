/**
 * The pure parts of the hand-off (docs/restore.md "Hand-off"): the --exec spec (checked
 * against the image and the disk, placeholders filled in), the host's descriptors and
 * their batches of at most 253 fds, the HANDOFF / HANDED_OFF frames, and the helper's
 * PIDFD_CR_CLOEXEC_FDS parsing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkExecSpec, expandExec, templateOf } from '../../src/coordinator/exec-spec.js';
import {
  decodeHandoffMessage,
  describeTaskPidfds,
  handoffBatches,
  HANDOFF_BATCH_MAX,
} from '../../src/protocol/handoff.js';
import {
  decodeToCoordinator,
  decodeToWorker,
  encodeToCoordinator,
  encodeToWorker,
} from '../../src/protocol/wire.js';
import { cloexecFdsFromEnv } from '../../src/sys/cloexec-env.js';
import { cloexecEnv, keptFds, pidfdsEnv } from '../../src/actors/handoff.js';
import { PcrError } from '../../src/errors.js';
import { SAMPLE_PID_MAP, file, image, sampleImage, target, task } from '../fixtures/plan-images.js';
import type { HandoffMessage } from '../../src/protocol/messages.js';

const img = sampleImage();
const code = (fn: () => unknown): string => {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof PcrError, String(err));
    return `${err.code}: ${err.message}`;
  }
  return 'no error';
};

test('exec spec: a template or a map with "*"; every task must get a program that exists', () => {
  assert.deepEqual(checkExecSpec(['/bin/true'], img), ['/bin/true']);
  const map = { '100': ['/bin/sh', '-c', 'x'], '*': ['/bin/true'] };
  assert.equal(checkExecSpec(map, img), map);
  assert.deepEqual(templateOf(map, 100), ['/bin/sh', '-c', 'x']);
  assert.deepEqual(templateOf(map, 300), ['/bin/true']);
  assert.equal(
    code(() => checkExecSpec({ '100': ['/bin/true'] }, img)),
    'PCR_ERR_USAGE: exec: no program for task 200 (add it, or "*")',
  );
  assert.match(
    code(() => checkExecSpec({ '999': ['/bin/true'] }, img)),
    /task '999' is not a task/,
  );
  assert.match(
    code(() => checkExecSpec(['true'], img)),
    /true is not an absolute path/,
  );
  assert.match(
    code(() => checkExecSpec(['/bin/{comm}'], img)),
    /holds a placeholder/,
  );
  assert.match(
    code(() => checkExecSpec(['/bin/true', '{nope}'], img)),
    /unknown placeholder \{nope\}/,
  );
  assert.match(
    code(() => checkExecSpec([], img)),
    /not a non-empty list of strings/,
  );
  assert.match(
    code(() => checkExecSpec('/bin/true', img)),
    /neither an argv list nor a map/,
  );
  assert.equal(
    code(() => checkExecSpec({ '*': ['/bin/true'], '300': ['/no/such'] }, img)),
    'PCR_ERR_EXEC: --exec for task 300: /no/such does not exist (ENOENT)',
  );
  assert.equal(
    code(() => checkExecSpec(['/etc'], img)),
    'PCR_ERR_EXEC: --exec for task 100: /etc is not a regular file',
  );
});

test('exec spec: placeholders are filled in per task, braces escaped', () => {
  const argv = ['/p', '{dumped_pid}:{pid}:{ppid}:{comm}', '{{pid}}', 'x{pid}y'];
  const root = SAMPLE_PID_MAP.pids.find((p) => p.dumped === 100)!.restored;
  const t300 = SAMPLE_PID_MAP.pids.find((p) => p.dumped === 300)!.restored;
  assert.deepEqual(expandExec(argv, img, SAMPLE_PID_MAP, 300), [
    '/p',
    `300:${t300}:${root}:t300`,
    '{pid}',
    `x${t300}y`,
  ]);
  // The root's parent is the coordinator.
  assert.equal(expandExec(['/p', '{ppid}'], img, SAMPLE_PID_MAP, 100)[1], String(process.pid));
});

test('descriptors: every pidfd of a task with its flags, file and target as restored', () => {
  const d = describeTaskPidfds(img, SAMPLE_PID_MAP, 300);
  const r = (p: number) => SAMPLE_PID_MAP.pids.find((x) => x.dumped === p)!.restored;
  assert.deepEqual(
    d.map((x) => [x.fd, x.kind, x.targetRestoredPid, x.fileId, x.cloexec]),
    [
      [3, 'in-tree-zombie', r(400), 4, true],
      [4, 'external', 777, 6, true],
      [5, 'in-tree-alive', r(200), 0, true],
      [6, 'dead', -1, 7, true],
    ],
  );
  assert.equal(d[0]!.flags, 0o4002);
  assert.equal(d[3]!.exitStatus, 9);
  assert.equal(d[0]!.exitStatus, undefined);
  const thread = describeTaskPidfds(img, SAMPLE_PID_MAP, 100).find((x) => x.kind === 'thread')!;
  assert.equal(thread.targetTid, 201);
  assert.equal(thread.targetTaskPid, 200);
  assert.equal(thread.targetRestoredPid, 5201);
});

test('batches: at most 253 fds each, numbered, in fd order; a task without pidfds sends one empty batch', () => {
  const n = 2 * HANDOFF_BATCH_MAX + 4;
  const big = image(
    1,
    [
      task(
        1,
        0,
        Array.from({ length: n }, (_, i): [number, number] => [3 + i, 0]),
      ),
      task(2, 1, []),
    ],
    [file(0, 10)],
    [target(10, 'in-tree-alive', { pid: 2, taskPid: 2 })],
  );
  const map = {
    pids: [
      { dumped: 1, restored: 11 },
      { dumped: 2, restored: 12 },
    ],
    tids: [],
  };
  const batches = handoffBatches(big, map, 1);
  assert.deepEqual(
    batches.map((b) => b.fds.length),
    [253, 253, 4],
  );
  assert.deepEqual(
    batches.flatMap((b) => b.fds),
    Array.from({ length: n }, (_, i) => 3 + i),
  );
  batches.forEach((b, i) => {
    const m = decodeHandoffMessage(b.payload).batch!;
    assert.equal(m.index, i);
    assert.equal(m.count, 3);
    assert.equal(m.restoredPid, 11);
    assert.deepEqual(
      m.fds!.map((f) => f.fd),
      b.fds,
    );
    assert.ok(m.fds!.every((f) => f.targetRestoredPid === 12));
  });
  const empty = handoffBatches(big, map, 2);
  assert.equal(empty.length, 1);
  assert.deepEqual(empty[0]!.fds, []);
  assert.equal(decodeHandoffMessage(empty[0]!.payload).batch!.count, 1);
});

test('HANDOFF and HANDED_OFF frames round-trip', () => {
  const m: HandoffMessage = {
    type: 'HANDOFF',
    socketPath: '/run/host.sock',
    batches: [{ payload: Uint8Array.from([1, 2, 3]), fds: [3, 9] }],
    execArgv: ['/bin/prog', 'a b'],
    execEnv: ['A=1', 'PATH=/bin'],
  };
  const back = decodeToWorker(encodeToWorker(m)) as HandoffMessage;
  assert.deepEqual(
    { ...back, batches: back.batches.map((b) => ({ ...b, payload: [...b.payload] })) },
    { ...m, batches: [{ payload: [1, 2, 3], fds: [3, 9] }] },
  );
  assert.deepEqual(decodeToCoordinator(encodeToCoordinator({ type: 'HANDED_OFF', pid: 7 })), {
    type: 'HANDED_OFF',
    pid: 7,
  });
});

test('exec keeps fds 0-2 and the pidfds; PIDFD_CR_CLOEXEC_FDS names the close-on-exec ones', () => {
  const fds = [
    { fd: 9, fileId: 0, cloexec: true },
    { fd: 1, fileId: 1, cloexec: false },
    { fd: 5, fileId: 2, cloexec: true },
  ];
  assert.deepEqual(keptFds({ fds }), [0, 1, 2, 5, 9]);
  assert.equal(cloexecEnv({ fds }), 'PIDFD_CR_CLOEXEC_FDS=5,9');
  assert.equal(cloexecEnv({ fds: [] }), 'PIDFD_CR_CLOEXEC_FDS=');
  assert.equal(pidfdsEnv({ fds }), 'PIDFD_CR_FDS=1,5,9');
  assert.deepEqual(cloexecFdsFromEnv({ PIDFD_CR_CLOEXEC_FDS: '5,9' }), [5, 9]);
  assert.deepEqual(cloexecFdsFromEnv({ PIDFD_CR_CLOEXEC_FDS: '' }), []);
  assert.deepEqual(cloexecFdsFromEnv({}), []);
  assert.match(
    code(() => cloexecFdsFromEnv({ PIDFD_CR_CLOEXEC_FDS: '5,x' })),
    /PCR_ERR_USAGE: PIDFD_CR_CLOEXEC_FDS=5,x: x is not an fd number/,
  );
});

test('restore options: detach needs exec, exec excludes hold; handoffSocket must be a path', async () => {
  const { resolveRestoreOptions } = await import('../../src/restore/options.js');
  const signal = new AbortController().signal;
  assert.equal(
    code(() => resolveRestoreOptions({ detach: true })),
    'PCR_ERR_USAGE: restore option detach needs exec',
  );
  assert.equal(
    code(() => resolveRestoreOptions({ exec: ['/bin/true'], detach: true, hold: true, signal })),
    'PCR_ERR_USAGE: restore options hold and exec exclude each other (exec runs until the root program exits)',
  );
  assert.match(
    code(() => resolveRestoreOptions({ handoffSocket: '' })),
    /restore option handoffSocket: '' is not a path/,
  );
  assert.equal(resolveRestoreOptions({}).session.handoff, undefined);
  assert.deepEqual(resolveRestoreOptions({ handoffSocket: '/s' }).session.handoff, {
    socketPath: '/s',
    exec: undefined,
    detach: false,
  });
  assert.deepEqual(resolveRestoreOptions({ exec: ['/bin/true'], detach: true }).session.handoff, {
    socketPath: undefined,
    exec: ['/bin/true'],
    detach: true,
  });
});
