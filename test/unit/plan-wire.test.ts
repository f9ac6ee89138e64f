import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PcrError } from '../../src/errors.js';
import { planRestore } from '../../src/plan/planner.js';
import type { CoordinatorMessage, WorkerMessage } from '../../src/protocol/messages.js';
import {
  decodeFdTransfer,
  decodeToCoordinator,
  decodeToWorker,
  encodeFdTransfer,
  encodeToCoordinator,
  encodeToWorker,
  taskPlanFromPb,
  taskPlanToPb,
} from '../../src/protocol/wire.js';
import { FLAGS } from '../../src/model/image.js';
import { file, sampleImage } from '../fixtures/plan-images.js';

test('every TaskPlan survives the protobuf round trip unchanged', () => {
  const plan = planRestore(sampleImage(), { externalDead: false });
  for (const t of plan.tasks) {
    assert.deepEqual(taskPlanFromPb(taskPlanToPb(t)), t);
    const back = decodeToWorker(encodeToWorker({ type: 'ASSIGN', plan: t }));
    assert.deepEqual(back, { type: 'ASSIGN', plan: t });
  }
  // externalDead plans carry an assumed-sigkill temp and a 64-bit ino.
  const dead = planRestore(sampleImage(), { externalDead: true });
  for (const t of dead.tasks) assert.deepEqual(taskPlanFromPb(taskPlanToPb(t)), t);
  // Reopen flags (O_RDONLY = 0 included) survive too.
  const reopen = sampleImage();
  reopen.files[6] = file(6, 5000, FLAGS.O_LARGEFILE);
  const t300 = planRestore(reopen).tasks.find((t) => t.pid === 300)!;
  const back = taskPlanFromPb(taskPlanToPb(t300));
  assert.deepEqual(back, t300);
  assert.equal(back.steps['open-alive'].opens.find((o) => o.fileId === 6)!.reopenFlags, 0);
});

test('external-reopen keeps a full 64-bit ino', () => {
  const img = sampleImage();
  const big = 2n ** 64n - 2n;
  img.targets[4]!.ino = big;
  img.files[6]!.ino = big;
  const t300 = planRestore(img).tasks.find((t) => t.pid === 300)!;
  const back = taskPlanFromPb(taskPlanToPb(t300));
  const how = back.steps['open-alive'].opens.find((o) => o.fileId === 6)!.how;
  assert.equal(how.strategy === 'external-reopen' && how.ino, big.toString());
});

test('coordinator -> worker messages round-trip', () => {
  const msgs: CoordinatorMessage[] = [
    {
      type: 'GO',
      pidMap: { pids: [{ dumped: 100, restored: 5000 }], tids: [{ dumped: 201, restored: 5003 }] },
    },
    { type: 'TEARDOWN', reason: 'restore finished' },
  ];
  for (const m of msgs) assert.deepEqual(decodeToWorker(encodeToWorker(m)), m);
});

test('worker -> coordinator messages round-trip', () => {
  const msgs: WorkerMessage[] = [
    { type: 'WORKER_HELLO', pid: 100, restoredPid: 5000 },
    { type: 'WORKER_HELLO', pid: 100, restoredPid: 5000, nonce: new Uint8Array(16).fill(7) },
    {
      type: 'CHILDREN_SPAWNED',
      pid: 100,
      children: [{ dumped: 200, restored: 5001 }],
      threads: [],
    },
    { type: 'STEP', pid: 200, phase: 'kill-temp' },
    {
      type: 'WORKER_FAILED',
      pid: 200,
      failure: {
        code: 'PCR_ERR_SYSCALL',
        message: 'pidfd_open (pid 5) failed: ESRCH (3)',
        phase: 'open-alive',
        syscall: 'pidfd_open',
        errno: 3,
        errnoName: 'ESRCH',
      },
    },
    {
      type: 'WORKER_FAILED',
      pid: 200,
      failure: { code: 'PCR_ERR_RESTORE', message: 'temp died wrong', phase: 'kill-temp' },
    },
    {
      type: 'FD_REPORT',
      report: {
        pid: 100,
        restoredPid: 5000,
        fds: [
          {
            fd: 3,
            flags: 2,
            cloexec: true,
            ino: '18446744073709551615',
            targetPid: 5001,
            fileClass: '5000:3',
          },
          {
            fd: 4,
            flags: 2050,
            cloexec: false,
            ino: '77',
            targetPid: -1,
            exitStatus: 0,
            fileClass: '5000:4',
          },
        ],
      },
    },
    {
      type: 'TRACE',
      pid: 100,
      trace: {
        machine: 'task:100',
        from: 'ready',
        to: 'open-alive',
        event: 'PHASE',
        details: '{}',
        timeMs: 1234.5,
      },
    },
  ];
  for (const m of msgs) assert.deepEqual(decodeToCoordinator(encodeToCoordinator(m)), m);
});

test('FdTransfer payload round-trips and is never empty', () => {
  const t = { from: 300, phase: 'open-alive' as const, fileIds: [0, 7] };
  const bytes = encodeFdTransfer(t);
  assert.ok(bytes.length >= 1);
  assert.deepEqual(decodeFdTransfer(bytes), t);
});

test('a frame that says nothing is rejected by name', () => {
  assert.throws(
    () => decodeToWorker(new Uint8Array()),
    (e: unknown) => e instanceof PcrError && /ToWorker frame with no message/.test(e.message),
  );
  assert.throws(() => decodeToCoordinator(new Uint8Array()), /ToCoordinator frame/);
});
