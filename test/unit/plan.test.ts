import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PcrError } from '../../src/errors.js';
import { FLAGS } from '../../src/model/image.js';
import type { Image } from '../../src/model/image.js';
import { planRestore } from '../../src/plan/planner.js';
import type { RestorePlan, TaskPlan } from '../../src/plan/types.js';
import { BOOT_ID, RDWR, file, image, sampleImage, target, task } from '../fixtures/plan-images.js';

function taskPlan(plan: RestorePlan, pid: number): TaskPlan {
  const t = plan.tasks.find((x) => x.pid === pid);
  assert.ok(t, `task ${pid} is planned`);
  return t;
}

function refusal(img: Image, opts = {}): PcrError {
  try {
    planRestore(img, opts);
  } catch (err) {
    assert.ok(err instanceof PcrError);
    return err;
  }
  assert.fail('planRestore should have refused');
}

test('opener of a file to a live target is its holder with the highest dumped pid', () => {
  const plan = planRestore(sampleImage());
  const f0 = plan.files.find((f) => f.fileId === 0)!;
  assert.equal(f0.opener, 300);
  assert.deepEqual(f0.how, { strategy: 'pidfd-open', taskPid: 200 });
  assert.equal(f0.phase, 'open-alive');
  assert.deepEqual(
    f0.holders.map((h) => h.pid),
    [100, 300],
  );
});

test('strategies follow the target kind', () => {
  const plan = planRestore(sampleImage());
  const how = (id: number) => plan.files.find((f) => f.fileId === id)!.how;
  assert.deepEqual(how(4), { strategy: 'pidfd-open', taskPid: 400 });
  assert.deepEqual(how(5), { strategy: 'thread-open', taskPid: 200, tid: 201 });
  assert.deepEqual(how(6), {
    strategy: 'external-reopen',
    pid: 777,
    ino: '5000',
    bootId: BOOT_ID,
    zombie: false,
  });
  assert.deepEqual(how(2), { strategy: 'temp', groupId: 0 });
  assert.deepEqual(how(7), { strategy: 'temp', groupId: 1 });
});

test('one dead group per dead ino; creator is the highest holder of any file of that ino', () => {
  const plan = planRestore(sampleImage());
  assert.deepEqual(plan.deadGroups, [
    {
      groupId: 0,
      ino: '2000',
      creator: 200,
      exitStatus: 3 << 8,
      statusSource: 'recorded',
      fileIds: [2, 3],
    },
    {
      groupId: 1,
      ino: '6000',
      creator: 300,
      exitStatus: 9,
      statusSource: 'recorded',
      fileIds: [7],
    },
  ]);
  // File 3 is held only by 100, yet the group's creator 200 opens it (and only sends it).
  const f3 = plan.files.find((f) => f.fileId === 3)!;
  assert.equal(f3.opener, 200);
  assert.equal(f3.phase, 'dead');
});

test('the creator makes one temp, opens every file of its group and sends them', () => {
  const plan = planRestore(sampleImage());
  const t200 = taskPlan(plan, 200);
  assert.deepEqual(t200.steps.dead.temps, [
    { groupId: 0, ino: '2000', exitStatus: 3 << 8, statusSource: 'recorded' },
  ]);
  assert.deepEqual(t200.steps.dead.opens, [
    {
      fileId: 2,
      flags: RDWR,
      how: { strategy: 'temp', groupId: 0 },
      pidfdFlags: 0,
      installAt: [{ fd: 5, cloexec: true }],
    },
    {
      fileId: 3,
      flags: RDWR,
      how: { strategy: 'temp', groupId: 0 },
      pidfdFlags: 0,
      installAt: [],
    },
  ]);
  assert.deepEqual(t200.steps.dead.sends, [{ to: 100, fileIds: [2, 3] }]);
  assert.deepEqual(t200.killTemps, [0]);
  assert.deepEqual(taskPlan(plan, 100).killTemps, []);
});

test('receivers wait for the fd and install it at every fd number they held (dup)', () => {
  const plan = planRestore(sampleImage());
  const t100 = taskPlan(plan, 100);
  assert.deepEqual(t100.steps.dead.receives, [
    {
      from: 200,
      files: [
        { fileId: 2, installAt: [{ fd: 4, cloexec: false }] },
        {
          fileId: 3,
          installAt: [
            { fd: 6, cloexec: true },
            { fd: 7, cloexec: false },
          ],
        },
      ],
    },
  ]);
  assert.deepEqual(t100.steps['open-alive'].receives, [
    { from: 300, files: [{ fileId: 0, installAt: [{ fd: 3, cloexec: true }] }] },
  ]);
  assert.deepEqual(taskPlan(plan, 300).steps['open-alive'].sends, [{ to: 100, fileIds: [0] }]);
  // 100 holds the thread pidfd alone: it opens it itself.
  assert.deepEqual(
    t100.steps['open-alive'].opens.map((o) => o.fileId),
    [5],
  );
  assert.deepEqual(t100.steps['open-alive'].sends, []);
});

test('tasks: reserved fds, worker and zombie children, threads, final fd table', () => {
  const plan = planRestore(sampleImage());
  assert.deepEqual(
    plan.tasks.map((t) => t.pid),
    [100, 200, 300],
  );
  const t100 = taskPlan(plan, 100);
  assert.equal(t100.ppid, 0);
  assert.deepEqual(t100.reservedFds, [3, 4, 6, 7, 8]);
  assert.deepEqual(t100.workerChildren, [
    { pid: 200, reservedFds: [4, 5] },
    { pid: 300, reservedFds: [3, 4, 5, 6] },
  ]);
  assert.deepEqual(t100.zombieChildren, [{ pid: 400, exitStatus: 3 << 8, comm: 't400' }]);
  assert.deepEqual(taskPlan(plan, 200).threads, [201]);
  assert.deepEqual(t100.threads, []);
  assert.deepEqual(
    t100.fds.map((f) => [f.fd, f.fileId, f.cloexec]),
    [
      [3, 0, true],
      [4, 2, false],
      [6, 3, true],
      [7, 3, false],
      [8, 5, true],
    ],
  );
  assert.equal(taskPlan(plan, 200).ppid, 100);
});

test('sends are split at 253 fds per SCM_RIGHTS message', () => {
  const n = 300;
  const files = Array.from({ length: n }, (_, i) => file(i, 1000));
  const img = image(
    10,
    [
      task(10, 1, []),
      task(
        5,
        10,
        files.map((f) => [f.id + 3, f.id] as [number, number]),
      ),
      task(
        20,
        10,
        files.map((f) => [f.id + 3, f.id] as [number, number]),
      ),
    ],
    files,
    [target(1000, 'in-tree-alive', { pid: 10, taskPid: 10 })],
  );
  const plan = planRestore(img);
  const sends = taskPlan(plan, 20).steps['open-alive'].sends;
  assert.deepEqual(
    sends.map((s) => [s.to, s.fileIds.length]),
    [
      [5, 253],
      [5, 47],
    ],
  );
  const receives = taskPlan(plan, 5).steps['open-alive'].receives;
  assert.deepEqual(
    receives.map((r) => [r.from, r.files.length]),
    [
      [20, 253],
      [20, 47],
    ],
  );
});

test('same image, same plan; order of files and targets in the image does not matter', () => {
  const a = planRestore(sampleImage());
  assert.deepEqual(planRestore(sampleImage()), a);
  const shuffled = sampleImage();
  shuffled.files.reverse();
  shuffled.targets.reverse();
  for (const t of shuffled.tasks) t.fds.reverse();
  assert.deepEqual(planRestore(shuffled), a);
});

test('pidfd_open flags: PIDFD_NONBLOCK and PIDFD_THREAD come from the file flags', () => {
  const plan = planRestore(sampleImage());
  const file = (id: number) => plan.files.find((f) => f.fileId === id)!;
  assert.equal(file(4).pidfdFlags, FLAGS.O_NONBLOCK);
  assert.equal(file(5).pidfdFlags, FLAGS.O_EXCL);
  assert.equal(file(0).pidfdFlags, 0);
  assert.equal(file(0).reopenFlags, undefined);
});

test('O_LARGEFILE and other access modes are made by a /proc/self/fd reopen', () => {
  const img = sampleImage();
  img.files[6] = file(6, 5000, RDWR | FLAGS.O_LARGEFILE);
  img.files[2] = file(2, 2000, FLAGS.O_LARGEFILE | FLAGS.O_NONBLOCK); // O_RDONLY, dead target
  img.files[5] = file(5, 4000, FLAGS.O_LARGEFILE | RDWR); // a thread pidfd reopened
  const plan = planRestore(img);
  const f = (id: number) => plan.files.find((x) => x.fileId === id)!;
  assert.deepEqual([f(6).pidfdFlags, f(6).reopenFlags], [0, RDWR]);
  assert.deepEqual([f(2).pidfdFlags, f(2).reopenFlags], [0, FLAGS.O_NONBLOCK]);
  assert.deepEqual(f(5).how, { strategy: 'thread-open', taskPid: 200, tid: 201 });
  assert.deepEqual([f(5).pidfdFlags, f(5).reopenFlags], [FLAGS.O_EXCL, RDWR]);
  const step = plan.tasks[0]!.steps['open-alive'].opens.find((o) => o.fileId === 5)!;
  assert.equal(step.reopenFlags, RDWR);
  assert.equal(step.flags, FLAGS.O_LARGEFILE | RDWR);
});

test('access mode 03 is made by open_by_handle_at, even unprivileged, for any target kind', () => {
  const W3 = FLAGS.O_ACCMODE;
  const img = sampleImage();
  img.files[0] = file(0, 1000, W3); // alive
  img.files[4] = file(4, 3000, W3 | FLAGS.O_NONBLOCK); // zombie
  img.files[2] = file(2, 2000, W3); // dead: opened on x while it is alive
  img.files[6] = file(6, 5000, W3 | FLAGS.O_NONBLOCK); // external
  for (const opts of [{}, { unprivileged: true }]) {
    const plan = planRestore(img, opts);
    const f = (id: number) => plan.files.find((x) => x.fileId === id)!;
    assert.deepEqual([f(0).pidfdFlags, f(0).reopenFlags, f(0).flags], [0, W3, W3]);
    assert.deepEqual([f(4).reopenFlags, f(4).how.strategy], [W3 | FLAGS.O_NONBLOCK, 'pidfd-open']);
    assert.deepEqual([f(2).reopenFlags, f(2).how.strategy], [W3, 'temp']);
    assert.deepEqual(
      [f(6).reopenFlags, f(6).how.strategy],
      [W3 | FLAGS.O_NONBLOCK, 'external-reopen'],
    );
  }
  const thread = sampleImage();
  thread.files[5] = file(5, 4000, W3); // a handle open drops PIDFD_THREAD
  assert.match(refusal(thread).message, /task 100 fd 8: a thread pidfd without PIDFD_THREAD/);
});

test('a file carrying O_CLOEXEC (pidfs handle open) is made by open_by_handle_at with it', () => {
  const CX = FLAGS.O_CLOEXEC;
  const img = sampleImage();
  img.files[0] = file(0, 1000, RDWR | CX); // alive
  img.files[2] = file(2, 2000, RDWR | CX | FLAGS.O_NONBLOCK); // dead: x while alive
  img.files[4] = file(4, 3000, FLAGS.O_ACCMODE | CX); // zombie, access mode 03
  for (const opts of [{}, { unprivileged: true }]) {
    const plan = planRestore(img, opts);
    const f = (id: number) => plan.files.find((x) => x.fileId === id)!;
    assert.deepEqual([f(0).pidfdFlags, f(0).reopenFlags, f(0).flags], [0, RDWR | CX, RDWR | CX]);
    assert.deepEqual([f(2).reopenFlags, f(2).how.strategy], [RDWR | CX | FLAGS.O_NONBLOCK, 'temp']);
    assert.deepEqual([f(4).reopenFlags, f(4).how.strategy], [FLAGS.O_ACCMODE | CX, 'pidfd-open']);
  }
  const thread = sampleImage();
  thread.files[5] = file(5, 4000, RDWR | FLAGS.O_EXCL | CX); // a handle open drops O_EXCL
  assert.match(
    refusal(thread).message,
    /task 100 fd 8: flags 02000202 \(O_RDWR\|O_EXCL\(PIDFD_THREAD\)\|O_CLOEXEC\) cannot be made/,
  );
  const ro = sampleImage();
  ro.files[0] = file(0, 1000, CX); // O_RDONLY: a handle open gives 02
  assert.match(refusal(ro).message, /task 100 fd 3: flags 02000000 \(O_RDONLY\|O_CLOEXEC\)/);
});

test('refuses flags neither pidfd_open nor a reopen can make, naming task, fd and flags', () => {
  const excl = sampleImage();
  excl.files[6] = file(6, 5000, RDWR | FLAGS.O_LARGEFILE | FLAGS.O_EXCL);
  const e = refusal(excl);
  assert.equal(e.code, 'PCR_ERR_UNSUPPORTED');
  assert.match(
    e.message,
    /task 300 fd 4: flags 0100202 \(O_RDWR\|O_EXCL\(PIDFD_THREAD\)\|O_LARGEFILE\)/,
  );
  const ro = sampleImage();
  ro.files[0] = file(0, 1000, 0);
  assert.match(refusal(ro).message, /task 100 fd 3: flags 00 \(O_RDONLY\) cannot be made/);
  const acc = sampleImage();
  acc.files[0] = file(0, 1000, 3 | FLAGS.O_LARGEFILE);
  assert.match(refusal(acc).message, /task 100 fd 3: flags 0100003 \(O_ACCMODE\|O_LARGEFILE\)/);
});

test('unprivileged: a file that needs a reopen is refused at plan time', () => {
  const img = sampleImage();
  img.files[6] = file(6, 5000, RDWR | FLAGS.O_LARGEFILE);
  const e = refusal(img, { unprivileged: true });
  assert.match(
    e.message,
    /task 300 fd 4: flags 0100002 \(O_RDWR\|O_LARGEFILE\) need a \/proc\/self\/fd reopen, which needs CAP_DAC_OVERRIDE/,
  );
});

test('refuses a dead target without status, or with a core-dumped status', () => {
  const img = sampleImage();
  img.targets[1] = target(2000, 'dead');
  const e = refusal(img);
  assert.equal(e.code, 'PCR_ERR_UNSUPPORTED');
  assert.match(e.message, /task 100 fd 4: dead target \(ino 2000\) has no recorded exit status/);
  const core = sampleImage();
  core.targets[1] = target(2000, 'dead', { exitStatus: 0x80 | 11 });
  assert.match(refusal(core).message, /killed by signal 11 \(core dumped\) cannot be reproduced/);
});

test('refuses zombie tasks it cannot recreate', () => {
  const img = sampleImage();
  img.tasks[3] = task(400, 100, [[3, 4]], { state: 'zombie', exitStatus: 0 });
  assert.match(refusal(img).message, /task 400 \(t400\): a zombie cannot hold pidfds/);
  const noStatus = sampleImage();
  noStatus.tasks[3] = task(400, 100, [], { state: 'zombie' });
  assert.match(
    refusal(noStatus).message,
    /task 400 \(t400\): zombie without a recorded exit status/,
  );
  const stopped = sampleImage();
  stopped.tasks[3] = task(400, 100, [], { state: 'zombie', exitStatus: 19 });
  assert.match(refusal(stopped).message, /zombie killed by signal 19: that signal does not kill/);
});

test('refuses a task in a nested pid namespace, naming it and its NSpid chain', () => {
  const img = sampleImage();
  img.tasks[1]!.nsPids = [200, 1];
  assert.match(
    refusal(img).message,
    /task 200 \(t200\) lives in a nested pid namespace \(NSpid 200 1\); pidfd-cr restores tasks into its own pid namespace only/,
  );
  const ok = sampleImage();
  ok.targets.find((t) => t.kind === 'external')!.nsPids = [6000, 1]; // a target may be
  assert.doesNotThrow(() => planRestore(ok));
});

test('refuses a zombie whose comm PR_SET_NAME cannot give back, takes any other', () => {
  for (const [comm, why] of [
    ['a\0b', /task 400 \(a\0b\): zombie comm 'a\0b' contains NUL/],
    ['x'.repeat(16), /zombie comm 'x{16}' is longer than 15 bytes/],
  ] as const) {
    const img = sampleImage();
    img.tasks[3] = { ...img.tasks[3]!, comm };
    const e = refusal(img);
    assert.equal(e.code, 'PCR_ERR_UNSUPPORTED');
    assert.match(e.message, why);
  }
  for (const comm of ['a b.c ..d(é)', 'a/b', '.', '..', '']) {
    const ok = sampleImage();
    ok.tasks[3] = { ...ok.tasks[3]!, comm };
    assert.equal(taskPlan(planRestore(ok), 100).zombieChildren[0]!.comm, comm);
  }
});

test('refuses a thread pidfd without PIDFD_THREAD', () => {
  const img = sampleImage();
  img.files[5] = file(5, 4000, RDWR);
  assert.match(refusal(img).message, /task 100 fd 8: a thread pidfd without PIDFD_THREAD/);
});

test('external targets: reopened on the same boot, refused on another, dead with externalDead', () => {
  const same = planRestore(sampleImage(), { currentBootId: BOOT_ID });
  assert.equal(same.files.find((f) => f.fileId === 6)!.how.strategy, 'external-reopen');
  const e = refusal(sampleImage(), { currentBootId: 'another-boot' });
  assert.equal(e.code, 'PCR_ERR_UNSUPPORTED');
  assert.match(e.message, /task 300 fd 4: external target pid 777 \(sleep, ino 5000\)/);
  assert.match(e.message, /externalDead/);

  const dead = planRestore(sampleImage(), { externalDead: true, currentBootId: 'another-boot' });
  assert.equal(dead.externalDead, true);
  const g = dead.deadGroups.find((x) => x.ino === '5000')!;
  assert.deepEqual(g, {
    groupId: 1,
    ino: '5000',
    creator: 300,
    exitStatus: 9,
    statusSource: 'assumed-sigkill',
    fileIds: [6],
  });
  assert.deepEqual(dead.files.find((f) => f.fileId === 6)!.how, { strategy: 'temp', groupId: 1 });
});

test('every refusal is reported at once', () => {
  const img = sampleImage();
  img.files[6] = file(6, 5000, RDWR | FLAGS.O_LARGEFILE | FLAGS.O_EXCL);
  img.targets[1] = target(2000, 'dead');
  const msg = refusal(img).message;
  assert.match(msg, /O_LARGEFILE/);
  assert.match(msg, /no recorded exit status/);
});

test('an image whose parents or targets are missing is invalid, not unsupported', () => {
  const img = sampleImage();
  img.tasks[1] = task(200, 999, []);
  assert.equal(refusal(img).code, 'PCR_ERR_IMAGE_INVALID');
  const noTarget = sampleImage();
  noTarget.targets.splice(0, 1);
  assert.equal(refusal(noTarget).code, 'PCR_ERR_IMAGE_INVALID');
});
