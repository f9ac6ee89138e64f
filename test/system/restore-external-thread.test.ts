/**
 * A PIDFD_THREAD pidfd to a non-leader thread of a process outside the tree (the example
 * builder cannot make one): an external Node process's V8/libuv threads live as long as
 * it does. The dump records the thread (tid, tgid, ino); the restore reopens it with
 * PIDFD_THREAD and proves it by its pidfs ino; once that thread's process is gone the
 * restore refuses by name, or restores it as dead with --external-dead.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { dumpTree } from '../../src/dump/index.js';
import { FLAGS } from '../../src/model/image.js';
import { PcrError } from '../../src/errors.js';
import { PIDFD_THREAD } from '../../native/index.js';
import {
  holdPidfd,
  killQuiet,
  restoreHeld,
  startNode,
  waitUntil,
  type After,
} from '../helpers/holder.js';
import { waitGone } from '../helpers/restore-run.js';
import { exists } from '../helpers/proc-view.js';

/** An external Node process and one of its non-leader threads. */
async function externalThread(t: After): Promise<{ ext: number; tid: number }> {
  const ext = startNode(t, 'setInterval(() => {}, 1e9);');
  const others = (): number[] =>
    readdirSync(`/proc/${ext}/task`)
      .map(Number)
      .filter((x) => x !== ext)
      .sort((a, b) => a - b);
  await waitUntil(`process ${ext} has non-leader threads`, () => others().length > 0);
  return { ext, tid: others()[0]! };
}

test('a PIDFD_THREAD pidfd to a thread of an external process: dumped, reopened, proven', async (t) => {
  const { ext, tid } = await externalThread(t);
  const task = await holdPidfd(t, tid, PIDFD_THREAD, 5);
  const image = await dumpTree(task);
  const target = image.targets.find((x) => x.pid === tid);
  assert.ok(target, 'the thread is a target');
  assert.equal(target.kind, 'external');
  assert.deepEqual([target.tid, target.tgid], [tid, ext]);
  const file = image.files.find((f) => f.ino === target.ino)!;
  assert.equal(file.flags, FLAGS.O_RDWR | FLAGS.O_EXCL);
  assert.deepEqual(image.tasks[0]!.fds, [{ fd: 5, fileId: file.id, cloexec: false }]);

  const r = await restoreHeld(image);
  assert.equal(r.result.ok, true, JSON.stringify(r.result.differences));
  assert.deepEqual(r.problems, [], 'the restored tree is right from /proc');
  assert.equal(r.fd5?.flags, FLAGS.O_RDWR | FLAGS.O_EXCL, 'fd 5: PIDFD_THREAD, not close-on-exec');
  assert.equal(r.fd5?.pid, tid, 'fd 5 refers to the thread');
  for (const pid of r.everyone) assert.equal(exists(pid), false, `process ${pid} is gone`);
  assert.deepEqual(r.left, [], 'run directory removed');
});

test('the external thread gone: refused by name; --external-dead restores it as dead', async (t) => {
  const { ext, tid } = await externalThread(t);
  const task = await holdPidfd(t, tid, PIDFD_THREAD, 5);
  const image = await dumpTree(task);
  killQuiet(task);
  killQuiet(ext);
  assert.deepEqual(await waitGone([task, ext]), []);

  await assert.rejects(restoreHeld(image), (e: unknown) => {
    assert.ok(e instanceof PcrError, String(e));
    assert.match(e.message, new RegExp(`external target .*${tid}`));
    return true;
  });
  const r = await restoreHeld(image, true);
  assert.equal(r.result.ok, true, JSON.stringify(r.result.differences));
  assert.equal(r.status5, 9, 'PIDFD_GET_INFO(EXIT) of a copy: killed by SIGKILL');
  assert.equal(r.fd5?.flags, FLAGS.O_RDWR | FLAGS.O_EXCL);
  assert.equal(r.fd5?.pid, -1, 'a dead target (fdinfo Pid -1)');
  for (const pid of r.everyone) assert.equal(exists(pid), false, `process ${pid} is gone`);
  assert.deepEqual(r.left, [], 'run directory removed');
});
