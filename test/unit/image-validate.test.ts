/**
 * Every validation rule of docs/image-format.md, each broken on its own in the sample
 * image, with the exact `where` it must report. Cases go through the whole decoder
 * (encode without validation, then decodeImage); enum and presence cases are forged at
 * the protobuf level because the model cannot express them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pidfdcr } from '../../gen/pb.js';
import { ImageError } from '../../src/errors.js';
import { decodeImage, encodeImageUnchecked, frame } from '../../src/image/codec.js';
import { imageToProto } from '../../src/image/proto-map.js';
import { isEndStatus, validateImage } from '../../src/image/validate.js';
import { DEFAULT_NR_OPEN, readFdLimit } from '../../src/image/limits.js';
import { makeTarget, type Image, type Target } from '../../src/model/image.js';
import { sampleImage } from '../fixtures/image-sample.js';

const LIMITS = { fdLimit: 1048576 };

type Case = [name: string, where: string, breakIt: (img: Image) => void, text?: RegExp];

const t = (img: Image, i: number) => img.tasks[i]!;
const extraTarget = (ino: bigint): Target => makeTarget({ ino, kind: 'external', pid: 77 });

/** A ninth target (ino 6000) with its own file (id 10), held by the root at fd 20. */
function withTarget(img: Image, fields: Partial<Target> & Pick<Target, 'kind' | 'pid'>): void {
  img.targets.push(makeTarget({ ino: 6000n, ...fields }));
  img.files.push({ id: 10, flags: fields.kind === 'thread' ? 0o202 : 0o2, ino: 6000n });
  img.tasks[0]!.fds.push({ fd: 20, fileId: 10, cloexec: false });
}

const CASES: Case[] = [
  ['format version in the model', 'format_version', (i) => (i.formatVersion = 2)],
  ['empty boot id', 'host.boot_id', (i) => (i.host.bootId = '')],
  ['no tasks', 'tasks', (i) => (i.tasks = [])],
  ['root_pid not a task', 'root_pid', (i) => (i.rootPid = 999), /999 is not a task/],
  [
    'root not listed first',
    'root_pid',
    (i) => (i.rootPid = 200),
    /the root 200 is tasks\[1\]; it must be listed first/,
  ],
  ["root's parent is a task", 'tasks[0].ppid', (i) => (t(i, 0).ppid = 400)],
  ['duplicate task pid', 'tasks[3].pid', (i) => (t(i, 3).pid = 200), /also tasks\[1\]/],
  ['task pid not positive', 'tasks[1].pid', (i) => (t(i, 1).pid = 0)],
  ['parent not in the image', 'tasks[2].ppid', (i) => (t(i, 2).ppid = 12345), /not a task/],
  [
    'ppid cycle',
    'tasks[1].ppid',
    (i) => {
      t(i, 1).ppid = 300;
      t(i, 2).ppid = 200;
    },
    /cycle/,
  ],
  [
    'parent listed after its child',
    'tasks[1].ppid',
    (i) => i.tasks.splice(1, 2, t(i, 2), t(i, 1)),
    /listed after it/,
  ],
  ['tgid differs from pid', 'tasks[1].tgid', (i) => (t(i, 1).tgid = 100)],
  ['leader not first in tids', 'tasks[0].tids[0]', (i) => (t(i, 0).tids = [101, 100])],
  ['tid shared by two tasks', 'tasks[1].tids[1]', (i) => t(i, 1).tids.push(101)],
  ['unknown task state', 'tasks[1].state', (i) => (t(i, 1).state = 'dead' as 'running')],
  ['exit status on a live task', 'tasks[1].exit_status', (i) => (t(i, 1).exitStatus = 0)],
  ['bad zombie exit status', 'tasks[2].exit_status', (i) => (t(i, 2).exitStatus = 0x17f)],
  [
    'zombie task holding fds',
    'tasks[2].fds',
    (i) => t(i, 2).fds.push({ fd: 3, fileId: 1, cloexec: false }),
    /a zombie holds no fds/,
  ],
  ['duplicate fd number', 'tasks[0].fds[1].fd', (i) => (t(i, 0).fds[1]!.fd = 3), /listed twice/],
  ['fds out of order', 'tasks[0].fds[2].fd', (i) => (t(i, 0).fds[2]!.fd = 2), /out of order/],
  ['negative fd', 'tasks[1].fds[0].fd', (i) => (t(i, 1).fds[0]!.fd = -1)],
  [
    'fd at the kernel limit',
    'tasks[0].fds[4].fd',
    (i) => (t(i, 0).fds[4]!.fd = LIMITS.fdLimit),
    /\[0, 1048576\)/,
  ],
  [
    'file_id referencing no file',
    'tasks[0].fds[1].file_id',
    (i) => (t(i, 0).fds[1]!.fileId = 42),
    /no file has id 42/,
  ],
  ['duplicate file id', 'files[3].id', (i) => (i.files[3]!.id = 1), /also files\[0\]/],
  [
    'file no fd uses',
    'files[9]',
    (i) => i.files.push({ id: 10, flags: 2, ino: 5000n }),
    /no fd uses file 10/,
  ],
  [
    'a file carrying O_CLOEXEC with an fd read as not close-on-exec',
    'tasks[0].fds[0].cloexec',
    (i) => (i.files[0]!.flags |= 0o2000000),
    /file 1 carries O_CLOEXEC/,
  ],
  ['file ino with no target', 'files[5].ino', (i) => (i.files[5]!.ino = 777n), /no target/],
  ['duplicate target ino', 'targets[5].ino', (i) => (i.targets[5]!.ino = 5000n)],
  [
    'target no file points at',
    'targets[8]',
    (i) => i.targets.push(extraTarget(9999n)),
    /no file points at ino 9999/,
  ],
  [
    'in-tree target whose task_pid is not a task',
    'targets[0].task_pid',
    (i) => (i.targets[0]!.taskPid = 999),
  ],
  [
    'in-tree-alive target of a zombie task',
    'targets[5].task_pid',
    (i) => (i.targets[5]!.kind = 'in-tree-alive'),
    /is a zombie/,
  ],
  [
    'zombie target whose task is not a zombie',
    'targets[5].task_pid',
    (i) => Object.assign(i.targets[5]!, { taskPid: 200, pid: 200 }),
    /not a zombie/,
  ],
  ['in-tree target pid differs', 'targets[0].pid', (i) => (i.targets[0]!.pid = 100)],
  ['thread target without tid', 'targets[1].tid', (i) => (i.targets[1]!.tid = 0)],
  [
    'thread target without owning task',
    'targets[1].task_pid',
    (i) => (i.targets[1]!.taskPid = 999),
  ],
  [
    'thread target whose tid is not a thread of its task',
    'targets[1].tid',
    (i) => Object.assign(i.targets[1]!, { taskPid: 200 }),
  ],
  ['dead target with a pid', 'targets[2].pid', (i) => (i.targets[2]!.pid = 42)],
  ['dead target with a task', 'targets[2].task_pid', (i) => (i.targets[2]!.taskPid = 100)],
  ['exit status on a live target', 'targets[0].exit_status', (i) => (i.targets[0]!.exitStatus = 0)],
  ['bad dead exit status', 'targets[2].exit_status', (i) => (i.targets[2]!.exitStatus = 0x10000)],
  ['external target inside the tree', 'targets[4].pid', (i) => (i.targets[4]!.pid = 400)],
  ['zombie flag on a dead target', 'targets[2].zombie', (i) => (i.targets[2]!.zombie = true)],
  ['tgid on an in-tree target', 'targets[0].tgid', (i) => (i.targets[0]!.tgid = 5)],
  [
    'two targets naming one live task',
    'targets[8]',
    (i) => withTarget(i, { kind: 'in-tree-alive', pid: 200, taskPid: 200 }),
    /process 200 is also targets\[0\]: one process has one pidfs inode/,
  ],
  [
    'two targets naming one zombie task',
    'targets[8]',
    (i) => withTarget(i, { kind: 'in-tree-zombie', pid: 300, taskPid: 300 }),
    /process 300 is also targets\[5\]/,
  ],
  [
    'two targets naming one thread',
    'targets[8]',
    (i) => withTarget(i, { kind: 'thread', pid: 101, taskPid: 100, tid: 101 }),
    /thread 101 is also targets\[1\]/,
  ],
  [
    'two external targets naming one process',
    'targets[8]',
    (i) => withTarget(i, { kind: 'external', pid: 1 }),
    /process 1 is also targets\[4\]/,
  ],
  [
    'two external targets naming one thread',
    'targets[8]',
    (i) => withTarget(i, { kind: 'external', pid: 555, tid: 555, tgid: 554 }),
    /thread 555 is also targets\[6\]/,
  ],
  [
    'an external target that is a thread of a task',
    'targets[4].pid',
    (i) => (i.targets[4]!.pid = 101),
    /101 is a thread of tasks\[0\]: not external/,
  ],
  [
    'an external zombie thread',
    'targets[6].zombie',
    (i) => (i.targets[6]!.zombie = true),
    /only a process is a zombie/,
  ],
  [
    'a zombie task with a child',
    'tasks[4].ppid',
    (i) =>
      i.tasks.push({
        pid: 500,
        ppid: 300,
        tgid: 500,
        tids: [500],
        comm: 'orphan',
        argv: [],
        state: 'running',
        procState: 'S',
        nsPids: [500],
        fds: [],
      }),
    /parent 300 \(tasks\[2\]\) is a zombie/,
  ],
];

function whereOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ImageError, `not an ImageError: ${(err as Error)?.stack}`);
    return err.where;
  }
  return '(accepted)';
}

test('the sample image is valid', () => {
  validateImage(sampleImage(), LIMITS);
});

for (const [name, where, breakIt, text] of CASES) {
  test(`rejects ${name} at ${where}`, () => {
    const image = sampleImage();
    breakIt(image);
    // The model-level check (what encodeImage runs) ...
    assert.equal(
      whereOf(() => validateImage(image, LIMITS)),
      where,
    );
    // ... and the full decoder agree, when the model can be encoded at all.
    if (where === 'format_version' || name.startsWith('unknown')) return;
    let err: ImageError | undefined;
    try {
      decodeImage(encodeImageUnchecked(image), '/d/pidfd-cr.img', { limits: LIMITS });
    } catch (e) {
      err = e as ImageError;
    }
    assert.ok(err instanceof ImageError, `accepted: ${name}`);
    assert.equal(err.where, where);
    assert.ok(err.message.startsWith(`${where}: `), err.message);
    assert.ok(err.message.endsWith('(in /d/pidfd-cr.img)'), err.message);
    if (text) assert.match(err.message, text);
  });
}

/** Forges a message the model cannot hold, at the protobuf level. */
function forged(edit: (m: pidfdcr.image.Image.$Properties) => void): Buffer {
  const m = imageToProto(sampleImage());
  edit(m);
  return frame(Buffer.from(pidfdcr.image.Image.encode(m).finish()));
}

const PROTO_CASES: [string, string, (m: pidfdcr.image.Image.$Properties) => void, RegExp][] = [
  ['missing host', 'host', (m) => delete m.host, /host context is missing/],
  [
    'task state out of range',
    'tasks[1].state',
    (m) => (m.tasks![1]!.state = 7 as pidfdcr.image.TaskState),
    /enum value 7/,
  ],
  ['task state unspecified', 'tasks[1].state', (m) => (m.tasks![1]!.state = 0), /unspecified/],
  ['target kind unspecified', 'targets[2].kind', (m) => (m.targets![2]!.kind = 0), /unspecified/],
  [
    'target kind out of range',
    'targets[0].kind',
    (m) => (m.targets![0]!.kind = 6 as pidfdcr.image.TargetKind),
    /enum/,
  ],
  [
    'negative enum',
    'targets[0].kind',
    (m) => (m.targets![0]!.kind = -1 as pidfdcr.image.TargetKind),
    /enum value -1/,
  ],
];

for (const [name, where, edit, text] of PROTO_CASES) {
  test(`rejects ${name} at ${where}`, () => {
    let err: unknown;
    try {
      decodeImage(forged(edit), undefined, { limits: LIMITS });
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof ImageError, `not an ImageError: ${String(err)}`);
    assert.equal(err.where, where);
    assert.match(err.message, text);
  });
}

test('fd numbers are checked against the running kernel by default', () => {
  const limit = readFdLimit();
  assert.ok(limit > 0);
  const image = sampleImage();
  t(image, 0).fds[4]!.fd = limit;
  const buf = encodeImageUnchecked(image);
  assert.throws(() => decodeImage(buf), { name: 'ImageError', where: 'tasks[0].fds[4].fd' });
  t(image, 0).fds[4]!.fd = limit - 1;
  assert.equal(decodeImage(encodeImageUnchecked(image)).tasks[0]!.fds[4]!.fd, limit - 1);
});

test('readFdLimit falls back to 1048576 when /proc cannot be read', () => {
  assert.equal(readFdLimit('/nonexistent/nr_open'), DEFAULT_NR_OPEN);
  assert.equal(DEFAULT_NR_OPEN, 1048576);
});

test('exit status words: exits and signals, nothing else', () => {
  for (const ok of [0, 7 << 8, 255 << 8, 9, 15, 0x8b, 64]) assert.ok(isEndStatus(ok), `${ok}`);
  for (const bad of [-1, 0x7f, 0x17f, 65, 0x1ff, 0x10000, 1.5, 0x10f]) {
    assert.ok(!isEndStatus(bad), `${bad}`);
  }
});
