/**
 * A PIDFD_THREAD pidfd to a non-leader thread of a process outside the tree (the example
 * builder cannot make one): an external Node process's V8/libuv threads live as long as
 * it does. The dump records the thread (tid, tgid, ino); the restore reopens it with
 * PIDFD_THREAD and proves it by its pidfs ino; once that thread's process is gone the
 * restore refuses by name, or restores it as dead with --external-dead.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dumpTree } from '../../src/dump/index.js';
import { FLAGS } from '../../src/image/model.js';
import { restoreImage } from '../../src/restore/coordinator.js';
import { PcrError } from '../../src/errors.js';
import { checkRestored, exitStatusThroughCopy } from '../helpers/restored-view.js';
import { descendantsOf, exists, fdinfo } from '../helpers/proc-view.js';

const NATIVE = new URL('../../native/index.js', import.meta.url).href;

type After = { after(fn: () => unknown): void };

function start(t: After, script: string): ChildProcess {
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
  });
  return child;
}

async function firstLine(child: ChildProcess): Promise<string> {
  let out = '';
  for await (const chunk of child.stdout!) {
    out += String(chunk);
    if (out.includes('\n')) return out.split('\n')[0]!;
  }
  throw new Error(`process ${child.pid} exited before it was ready`);
}

/** An external Node process and one of its non-leader threads. */
async function externalThread(t: After): Promise<{ ext: ChildProcess; tid: number }> {
  const ext = start(t, 'console.log("up"); setInterval(() => {}, 1e9);');
  await firstLine(ext);
  const tids = readdirSync(`/proc/${ext.pid}/task`).map(Number);
  const tid = tids.filter((x) => x !== ext.pid).sort((a, b) => a - b)[0];
  assert.ok(tid !== undefined, 'a Node process has non-leader threads');
  return { ext, tid };
}

/** A one-task tree holding pidfd_open(tid, PIDFD_THREAD) at fd 5, not close-on-exec. */
async function holder(t: After, tid: number): Promise<ChildProcess> {
  const task = start(
    t,
    `const n = await import(${JSON.stringify(NATIVE)});
     const fd = n.pidfdOpen(${tid}, n.PIDFD_THREAD);
     n.dup3(fd, 5, false); n.closeFd(fd);
     console.log('ready'); setInterval(() => {}, 1e9);`,
  );
  await firstLine(task);
  return task;
}

async function restoreHeld(image: Parameters<typeof restoreImage>[0], externalDead = false) {
  const parent = mkdtempSync(join(tmpdir(), 'pcr-extthread-test-'));
  const stop = new AbortController();
  let problems: string[] | undefined;
  let everyone: number[] = [];
  let fd5 = { flags: -1, pid: 0 };
  let status5: number | undefined;
  try {
    const result = await restoreImage(image, {
      hold: true,
      signal: stop.signal,
      runDirParent: parent,
      timeoutMs: 60_000,
      externalDead,
      onVerified: ({ pidMap }) => {
        const root = pidMap.pids[0]!.restored;
        everyone = [root, ...descendantsOf(root)];
        fd5 = fdinfo(root, 5);
        if (externalDead) status5 = exitStatusThroughCopy(root, 5);
        else problems = checkRestored(image, pidMap, process.pid);
        stop.abort('checked');
      },
    });
    return { result, problems, everyone, fd5, status5, left: readdirSync(parent) };
  } finally {
    rmSync(parent, { recursive: true, force: true });
  }
}

test('a PIDFD_THREAD pidfd to a thread of an external process: dumped, reopened, proven', async (t) => {
  const { ext, tid } = await externalThread(t);
  const task = await holder(t, tid);
  const image = await dumpTree(task.pid!);
  const target = image.targets.find((x) => x.pid === tid);
  assert.ok(target, 'the thread is a target');
  assert.equal(target.kind, 'external');
  assert.deepEqual([target.tid, target.tgid], [tid, ext.pid]);
  const file = image.files.find((f) => f.ino === target.ino)!;
  assert.equal(file.flags, FLAGS.O_RDWR | FLAGS.O_EXCL);
  assert.deepEqual(image.tasks[0]!.fds, [{ fd: 5, fileId: file.id, cloexec: false }]);

  const r = await restoreHeld(image);
  assert.equal(r.result.ok, true, JSON.stringify(r.result.differences));
  assert.deepEqual(r.problems, [], 'the restored tree is right from /proc');
  assert.equal(r.fd5.flags, FLAGS.O_RDWR | FLAGS.O_EXCL, 'fd 5: PIDFD_THREAD, not close-on-exec');
  assert.equal(r.fd5.pid, tid, 'fd 5 refers to the thread');
  for (const pid of r.everyone) assert.equal(exists(pid), false, `process ${pid} is gone`);
  assert.deepEqual(r.left, [], 'run directory removed');
});

test('the external thread gone: refused by name; --external-dead restores it as dead', async (t) => {
  const { ext, tid } = await externalThread(t);
  const task = await holder(t, tid);
  const image = await dumpTree(task.pid!);
  task.kill('SIGKILL');
  ext.kill('SIGKILL');
  await Promise.all([once(task, 'exit'), once(ext, 'exit')]);

  await assert.rejects(restoreHeld(image), (e: unknown) => {
    assert.ok(e instanceof PcrError, String(e));
    assert.match(e.message, new RegExp(`external target .*${tid}`));
    return true;
  });
  const r = await restoreHeld(image, true);
  assert.equal(r.result.ok, true, JSON.stringify(r.result.differences));
  assert.equal(r.status5, 9, 'PIDFD_GET_INFO(EXIT) of a copy: killed by SIGKILL');
  assert.equal(r.fd5.flags, FLAGS.O_RDWR | FLAGS.O_EXCL);
  assert.equal(r.fd5.pid, -1, 'a dead target (fdinfo Pid -1)');
  for (const pid of r.everyone) assert.equal(exists(pid), false, `process ${pid} is gone`);
  assert.deepEqual(r.left, [], 'run directory removed');
});
