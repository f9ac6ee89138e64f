/**
 * Pid namespaces, on real ones (`unshare --pid --fork`, needs CAP_SYS_ADMIN: skipped
 * by probe without it). A target inside a nested namespace is visible to us (NSpid
 * X 1): the dump records its chain and the restore reopens and proves it. A task of the
 * tree inside a nested namespace cannot be recreated there: the restore refuses it by
 * name before starting anything.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { dumpTree } from '../../src/dump/index.js';
import { PcrError } from '../../src/errors.js';
import { restoreImage } from '../../src/restore/restore-image.js';
import { kill, prctl, PR_SET_CHILD_SUBREAPER, spawn as spawnNative } from '../../native/index.js';

const SIGKILL = 9;
import { holdPidfd, restoreHeld, type After } from '../helpers/holder.js';
import { waitGone } from '../helpers/restore-run.js';
import { childrenOf, exists } from '../helpers/proc-view.js';
import { readStatus } from '../../src/procfs/index.js';

const canUnshare =
  spawnSync('unshare', ['--pid', '--fork', 'true'], { stdio: 'ignore' }).status === 0;
const skip = canUnshare ? false : 'unshare --pid needs CAP_SYS_ADMIN';

/**
 * `unshare --pid --fork --kill-child sleep 600`, our child: the unshare process is in our
 * namespace, its child (the sleep) is pid 1 of a new one. Killed and reaped after the
 * test (the sleep dies with unshare and comes back to us, a subreaper).
 */
async function nestedSleep(t: After): Promise<{ unshare: number; inner: number }> {
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  // posix_spawn, not child_process: libuv would waitpid() this child on SIGCHLD and eat
  // the ptrace-stop reports the dump's freeze waits for.
  const unshare = spawnNative({
    path: '/usr/bin/unshare',
    argv: ['unshare', '--pid', '--fork', '--kill-child', 'sleep', '600'],
    closeFrom: 3,
  });
  let inner = 0;
  t.after(async () => {
    kill(unshare, SIGKILL);
    assert.deepEqual(await waitGone(inner > 0 ? [unshare, inner] : [unshare]), []);
  });
  for (let i = 0; i < 5000; i++) {
    inner = childrenOf(unshare)[0] ?? 0;
    // In the new namespace and past its exec (a loaded machine shows it as `unshare`).
    const status = inner > 0 ? readStatus(inner) : undefined;
    if (status?.nsPids.length === 2 && status.name === 'sleep') return { unshare, inner };
    await sleep(1);
  }
  throw new Error(`unshare ${unshare} started no child in a new pid namespace`);
}

test(
  'a target inside a nested pid namespace: NSpid chain dumped, reopened and proven',
  {
    skip,
  },
  async (t) => {
    const { inner } = await nestedSleep(t);
    const task = await holdPidfd(t, inner, 0, 5);
    const image = await dumpTree(task);
    const target = image.targets.find((x) => x.pid === inner);
    assert.ok(target, 'the nested process is a target');
    assert.equal(target.kind, 'external');
    assert.deepEqual(target.nsPids, [inner, 1]);

    const r = await restoreHeld(image);
    assert.equal(r.result.ok, true, JSON.stringify(r.result.differences));
    assert.deepEqual(r.problems, [], 'the restored tree is right from /proc');
    assert.deepEqual(r.fd5?.nsPids, [inner, 1], 'fd 5 of the restored task: NSpid inner 1');
    for (const pid of r.everyone) assert.equal(exists(pid), false, `process ${pid} is gone`);
    assert.deepEqual(r.left, []);
  },
);

test(
  'a task of the tree inside a nested pid namespace is refused by name, nothing started',
  {
    skip,
  },
  async (t) => {
    const { unshare, inner } = await nestedSleep(t);
    const image = await dumpTree(unshare);
    assert.deepEqual(
      image.tasks.map((x) => x.nsPids),
      [[unshare], [inner, 1]],
    );
    const parent = mkdtempSync(join(tmpdir(), 'pcr-pidns-test-'));
    t.after(() => rmSync(parent, { recursive: true, force: true }));
    const before = childrenOf(process.pid).length;
    await assert.rejects(restoreImage(image, { runDirParent: parent }), (e: unknown) => {
      assert.ok(e instanceof PcrError, String(e));
      assert.equal(e.code, 'PCR_ERR_UNSUPPORTED');
      assert.match(
        e.message,
        new RegExp(
          `task ${inner} \\(sleep\\) lives in a nested pid namespace \\(NSpid ${inner} 1\\)`,
        ),
      );
      return true;
    });
    assert.equal(childrenOf(process.pid).length, before, 'no process started');
    assert.deepEqual(readdirSync(parent), [], 'no run directory');
  },
);
