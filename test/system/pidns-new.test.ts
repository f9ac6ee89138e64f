/**
 * restore --pidns new (issue 9), on a real container-like tree:
 *
 *     unshare --pid --fork --kill-child node tree.mjs     (our child, in our namespace)
 *      └─ node (pid 1 of a new namespace) ── sleep, sleep, sh (a zombie, exit 5)
 *           pidfds: fd 5 → first sleep, fd 6 → second sleep, fd 7 → itself,
 *                   fd 8 → a sleep of ours, outside the namespace (inherited as fd 3)
 *
 * dumped with --kill (the init's pid chain recorded, innermost NSpid 1), then restored
 * with --same-pids into a fresh namespace whose init is the restored root: every task
 * has its dumped inner pid and parent, and every pidfd's innermost NSpid is as before,
 * all checked from /proc from outside (our procfs shows "NSpid: outer inner"); fd 8 is an
 * external target, reopened by the coordinator outside the namespace and sent in: from
 * outside it is a pidfd to that very sleep (our pid, its pidfs ino).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fstatSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dumpToDir } from '../../src/dump/index.js';
import type { Image } from '../../src/model/image.js';
import { restoreImage } from '../../src/restore/restore-image.js';
import { PcrError } from '../../src/errors.js';
import {
  closeFd,
  kill,
  pidfdOpen,
  prctl,
  PR_SET_CHILD_SUBREAPER,
  spawn as spawnNative,
  waitpid,
  WNOHANG,
} from '../../native/index.js';
import { childrenOf, descendantsOf, exists, fdinfo } from '../helpers/proc-view.js';
import { killAll, waitGone } from '../helpers/restore-run.js';
import { waitUntil } from '../helpers/holder.js';
import { canChoosePids } from '../../src/sys/pid-choose.js';

const canUnshare =
  spawnSync('unshare', ['--pid', '--fork', 'true'], { stdio: 'ignore' }).status === 0;
const skip = !canUnshare
  ? 'unshare --pid needs CAP_SYS_ADMIN'
  : !canChoosePids()
    ? 'needs CAP_CHECKPOINT_RESTORE'
    : false;

const NATIVE = new URL('../../native/index.js', import.meta.url).href;
const TREE = `
const n = await import(${JSON.stringify(NATIVE)});
const put = (fd, at) => { n.dup3(fd, at, false); n.closeFd(fd); };
for (const at of [5, 6]) {
  const pid = n.spawn({ path: '/bin/sleep', argv: ['sleep', '600'], closeFrom: 3 });
  put(n.pidfdOpen(pid, 0), at);
}
put(n.pidfdOpen(process.pid, 0), 7);
put(3, 8); // from the test, outside this namespace: cannot be opened from in here
n.spawn({ path: '/bin/sh', argv: ['sh', '-c', 'exit 5'], closeFrom: 3 }); // a zombie child
setInterval(() => {}, 1e9);
`;

function nsPids(pid: number): number[] {
  const m = /^NSpid:\s+(.*)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m![1]!.trim().split(/\s+/).map(Number);
}
const inner = (pid: number): number => nsPids(pid).at(-1)!;
const isZombie = (pid: number): boolean => / Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
const ppidOf = (pid: number): number =>
  Number(/^PPid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);

test(
  'a tree under unshare --pid dumps with --kill and restores into --pidns new with identical inner pids',
  { skip },
  async (t) => {
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    const dir = mkdtempSync(join(tmpdir(), 'pcr-pidns-new-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const script = join(dir, 'tree.mjs');
    writeFileSync(script, TREE);
    const outside = spawnNative({ path: '/bin/sleep', argv: ['sleep', '600'], closeFrom: 3 });
    const outsideFd = pidfdOpen(outside, 0);
    const outsideIno = fstatSync(outsideFd, { bigint: true }).ino;
    const unshare = spawnNative({
      path: '/usr/bin/unshare',
      argv: ['unshare', '--pid', '--fork', '--kill-child', process.execPath, script],
      dup2: [[outsideFd, 3]],
      closeFrom: 4,
    });
    let init = 0;
    t.after(async () => {
      closeFd(outsideFd);
      assert.deepEqual(await killAll([unshare, outside]), []);
    });
    await waitUntil('the namespace tree ready', () => {
      init = childrenOf(unshare)[0] ?? 0;
      if (init === 0) return false;
      try {
        const kids = childrenOf(init);
        const zombie = kids.some((k) => / Z /.test(readFileSync(`/proc/${k}/stat`, 'utf8')));
        return [5, 6, 7, 8].every((fd) => fdinfo(init, fd).pid > 0) && kids.length === 3 && zombie;
      } catch {
        return false;
      }
    });
    // Before: every task's inner pid and parent, every pidfd's innermost NSpid.
    const tasks = [init, ...childrenOf(init)];
    const before = {
      pids: tasks.map(inner),
      parentOf: new Map(childrenOf(init).map((c) => [inner(c), 1])),
      zombies: childrenOf(init).filter(isZombie).map(inner),
      fds: new Map([5, 6, 7].map((fd) => [fd, fdinfo(init, fd).nsPids.at(-1)])),
    };
    assert.equal(inner(init), 1);
    assert.equal(before.fds.get(7), 1, 'fd 7 is the init itself');
    assert.equal(fdinfo(init, 8).pid, outside, 'fd 8 is our sleep');

    const dumping = dumpToDir(init, dir, { kill: true });
    // unshare reaps its child (the init) and exits: we reap unshare, as a shell would.
    await waitUntil('unshare gone', () => {
      try {
        waitpid(unshare, WNOHANG);
      } catch {
        // reaped
      }
      return !exists(unshare);
    });
    const { image } = await dumping;
    assert.deepEqual(
      image.tasks.map((x) => x.nsPids.at(-1)),
      before.pids,
      'the image records every innermost NSpid',
    );

    const stop = new AbortController();
    let seen:
      | {
          pids: number[];
          parents: Map<number, number>;
          zombies: number[];
          fds: Map<number, number | undefined>;
          external: { pid: number; ino: bigint };
        }
      | undefined;
    let everyone: number[] = [];
    const result = await restoreImage(image as Image, {
      pidns: 'new',
      samePids: true,
      hold: true,
      signal: stop.signal,
      runDirParent: dir,
      timeoutMs: 60_000,
      onVerified: () => {
        // From outside: the root is our child, the init of a new namespace.
        const root = childrenOf(process.pid).find((p) => {
          const ns = nsPids(p);
          return ns.length === 2 && ns[1] === 1;
        })!;
        everyone = [root, ...descendantsOf(root)];
        const kids = childrenOf(root);
        seen = {
          pids: [root, ...kids].map(inner),
          parents: new Map(kids.map((c) => [inner(c), inner(ppidOf(c))])),
          zombies: kids.filter(isZombie).map(inner),
          fds: new Map([5, 6, 7].map((fd) => [fd, fdinfo(root, fd).nsPids.at(-1)])),
          external: {
            pid: fdinfo(root, 8).pid,
            ino: statSync(`/proc/${root}/fd/8`, { bigint: true }).ino,
          },
        };
        stop.abort('checked');
      },
    });
    assert.equal(result.ok, true, JSON.stringify(result.differences));
    assert.ok(seen, 'verified and looked at');
    assert.deepEqual(
      [...seen.pids].sort((a, b) => a - b),
      [...before.pids].sort((a, b) => a - b),
      'every task at its inner pid',
    );
    assert.deepEqual(seen.parents, before.parentOf, 'every child under the init');
    assert.equal(before.zombies.length, 1);
    assert.deepEqual(seen.zombies, before.zombies, 'the zombie at its inner pid, a zombie');
    assert.deepEqual(seen.fds, before.fds, "every pidfd's innermost NSpid as before");
    assert.deepEqual(
      seen.external,
      { pid: outside, ino: outsideIno },
      'fd 8 is a pidfd to our very sleep (pid, pidfs ino), seen from outside',
    );
    assert.ok(exists(outside), 'the external target was not touched');
    assert.deepEqual(
      result.pidMap.pids.map((p) => p.restored).sort((a, b) => a - b),
      [...before.pids].sort((a, b) => a - b),
      'the pid map gives the inner pids',
    );
    assert.deepEqual(await waitGone(everyone), [], 'all gone');
  },
);

test(
  '--pidns new keeps an external target (identity-checked from outside), and fails cleanly when it is gone',
  { skip },
  async (t) => {
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    const dir = mkdtempSync(join(tmpdir(), 'pcr-pidns-ext-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const outside = spawnNative({ path: '/bin/sleep', argv: ['sleep', '600'], closeFrom: 3 });
    const outsideFd = pidfdOpen(outside, 0);
    const outsideIno = fstatSync(outsideFd, { bigint: true }).ino;
    const holder = spawnNative({
      path: process.execPath,
      argv: [
        'node',
        '--input-type=module',
        '-e',
        `const n = await import(${JSON.stringify(NATIVE)}); const fd = n.pidfdOpen(${outside}, 0); n.dup3(fd, 5, false); setInterval(() => {}, 1e9);`,
      ],
      closeFrom: 3,
    });
    t.after(async () => {
      closeFd(outsideFd);
      assert.deepEqual(await killAll([holder, outside]), []);
    });
    await waitUntil('holder ready', () => {
      try {
        return fdinfo(holder, 5).pid === outside;
      } catch {
        return false;
      }
    });
    const { image } = await dumpToDir(holder, dir);

    // Restored as the init of a new namespace: fd 5 still a pidfd to our sleep.
    const stop = new AbortController();
    let seen: { pid: number; ino: bigint; innerPid: number } | undefined;
    let everyone: number[] = [];
    const result = await restoreImage(image, {
      pidns: 'new',
      hold: true,
      signal: stop.signal,
      runDirParent: dir,
      timeoutMs: 60_000,
      onVerified: () => {
        const root = childrenOf(process.pid).find((p) => {
          const ns = nsPids(p);
          return ns.length === 2 && ns[1] === 1;
        })!;
        everyone = [root, ...descendantsOf(root)];
        seen = {
          pid: fdinfo(root, 5).pid,
          ino: statSync(`/proc/${root}/fd/5`, { bigint: true }).ino,
          innerPid: inner(root),
        };
        stop.abort('checked');
      },
    });
    assert.equal(result.ok, true, JSON.stringify(result.differences));
    assert.deepEqual(
      seen,
      { pid: outside, ino: outsideIno, innerPid: 1 },
      'the restored init holds a pidfd to our very sleep',
    );
    assert.deepEqual(await waitGone(everyone), [], 'all gone');
    assert.ok(exists(outside), 'the external target was not touched');

    // The target gone: the coordinator's identity check fails the restore, by name.
    kill(outside, 9);
    await waitUntil('sleep reaped', () => {
      try {
        waitpid(outside, WNOHANG);
      } catch {
        // reaped
      }
      return !exists(outside);
    });
    await assert.rejects(
      restoreImage(image, { pidns: 'new', runDirParent: dir, timeoutMs: 60_000 }),
      (e: unknown) => {
        assert.ok(e instanceof PcrError);
        assert.equal(e.code, 'PCR_ERR_RESTORE');
        assert.match(e.message, new RegExp(`\\(pid ${outside}, ino ${outsideIno}\\): gone`));
        return true;
      },
    );
    assert.deepEqual(childrenOf(process.pid), [holder], 'nothing left but the dumped holder');
  },
);
