/**
 * restoreImage's awaitable hooks on real trees: when each runs (checked from /proc at
 * that moment: no pidfd before treeBuilt resolves, every pidfd at verified, the tree
 * still there at beforeTeardown), what each is told, and that a hook that aborts, throws
 * or never resolves fails the restore by name and leaves nothing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readlinkSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { PcrError } from '../../src/errors.js';
import { restoreImage } from '../../src/restore/restore-image.js';
import type { HookContext } from '../../src/coordinator/settings.js';
import { alive } from '../fixtures/scenarios.js';
import { buildAndDump, waitGone } from '../helpers/restore-run.js';
import { descendantsOf, exists } from '../helpers/proc-view.js';

/** The fds of `pid` that are pidfds. */
const pidfdsOf = (pid: number): number[] =>
  readdirSync(`/proc/${pid}/fd`)
    .map(Number)
    .filter((fd) => {
      try {
        return readlinkSync(`/proc/${pid}/fd/${fd}`) === 'anon_inode:[pidfd]';
      } catch {
        return false;
      }
    });

interface Seen {
  hook: string;
  rootPid: number;
  pids: number[];
  pidfds: number;
  runDirExists: boolean;
  differences: number | undefined;
}

test('hooks run in order, each when its moment has come (seen from /proc), then nothing is left', async (t) => {
  const { image, dir } = await buildAndDump(t, alive);
  const before = new Set(descendantsOf(process.pid));
  const seen: Seen[] = [];
  const look = async (c: HookContext): Promise<void> => {
    const pids = c.pidMap.pids.map((p) => p.restored);
    seen.push({
      hook: c.hook,
      rootPid: c.rootPid,
      pids,
      pidfds: pids.filter(exists).reduce((n, p) => n + pidfdsOf(p).length, 0),
      runDirExists: existsSync(c.runDir),
      differences: c.differences?.length,
    });
    assert.equal(c.dumpedRootPid, image.rootPid);
    // An awaited hook holds the restore: wait a little and check nothing moved.
    await sleep(150);
    if (c.hook === 'treeBuilt')
      assert.equal(
        pids.filter(exists).reduce((n, p) => n + pidfdsOf(p).length, 0),
        0,
        'no pidfd opened while treeBuilt is pending',
      );
  };
  const result = await restoreImage(image, {
    runDirParent: dir,
    hooks: { treeBuilt: look, verified: look, beforeHandoff: look, beforeTeardown: look },
  });
  assert.equal(result.ok, true);
  assert.deepEqual(
    seen.map((s) => s.hook),
    ['treeBuilt', 'verified', 'beforeHandoff', 'beforeTeardown'],
  );
  const wanted = image.tasks.reduce((n, task) => n + task.fds.length, 0);
  assert.ok(wanted > 0);
  const root = result.pidMap.pids.find((p) => p.dumped === image.rootPid)!.restored;
  for (const s of seen) {
    assert.equal(s.rootPid, root, `${s.hook}: rootPid is the restored root`);
    assert.equal(s.runDirExists, true, `${s.hook}: the run directory exists`);
    assert.deepEqual(
      s.pids.sort(),
      result.pidMap.pids.map((p) => p.restored).sort(),
      `${s.hook}: the whole pid map`,
    );
  }
  assert.equal(seen[0]!.pidfds, 0, 'treeBuilt: before any pidfd');
  assert.equal(seen[0]!.differences, undefined);
  for (const s of seen.slice(1)) {
    assert.equal(s.pidfds, wanted, `${s.hook}: every pidfd in place`);
    assert.equal(s.differences, 0);
  }
  const left = descendantsOf(process.pid).filter((p) => !before.has(p));
  assert.deepEqual(await waitGone(left), []);
  assert.deepEqual(readdirSync(dir), []);
});

/** The restore must reject with a PcrError; nothing of it is left, no pidfd in us either. */
async function failsClean(dir: string, run: () => Promise<unknown>): Promise<PcrError> {
  const before = new Set(descendantsOf(process.pid));
  const ours = pidfdsOf(process.pid).length;
  const err = await run().then(
    () => assert.fail('the restore succeeded'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof PcrError, String(err));
  const left = descendantsOf(process.pid).filter((p) => !before.has(p));
  assert.deepEqual(await waitGone(left), [], 'no process of the restore left');
  assert.deepEqual(readdirSync(dir), [], 'no run directory left');
  assert.equal(pidfdsOf(process.pid).length, ours, 'no pidfd left in the caller');
  return err;
}

test('a hook that returns { abort } or throws fails the restore naming the hook; the tree is taken down', async (t) => {
  const { image, dir } = await buildAndDump(t, alive);
  let treePids: number[] = [];
  const aborted = await failsClean(dir, () =>
    restoreImage(image, {
      runDirParent: dir,
      hooks: {
        verified: (c) => {
          treePids = c.pidMap.pids.map((p) => p.restored);
          return { abort: 'the host could not restore memory' };
        },
        beforeTeardown: () => assert.fail('no later hook after an abort'),
      },
    }),
  );
  assert.equal(aborted.code, 'PCR_ERR_HOOK_ABORTED');
  assert.equal(
    aborted.message,
    'restore aborted in phase verify: hook verified aborted the restore: the host could not restore memory',
  );
  assert.ok(treePids.length > 0);
  assert.deepEqual(await waitGone(treePids), [], 'the restored tree is gone');
  const thrown = await failsClean(dir, () =>
    restoreImage(image, {
      runDirParent: dir,
      hooks: {
        treeBuilt: async () => {
          await sleep(10);
          throw new Error('no namespace for you');
        },
      },
    }),
  );
  assert.equal(thrown.code, 'PCR_ERR_HOOK_ABORTED');
  assert.equal(
    thrown.message,
    'restore aborted in phase spawn: hook treeBuilt aborted the restore: no namespace for you',
  );
});

test('a hook that never resolves is bounded by the timeout; its signal tells it so', async (t) => {
  const { image, dir } = await buildAndDump(t, alive);
  let signal: AbortSignal | undefined;
  const t0 = Date.now();
  const err = await failsClean(dir, () =>
    restoreImage(image, {
      runDirParent: dir,
      timeoutMs: 1500,
      hooks: {
        beforeHandoff: (c) => {
          signal = c.signal;
          return new Promise(() => {});
        },
      },
    }),
  );
  assert.equal(err.code, 'PCR_ERR_TIMEOUT');
  assert.equal(
    err.message,
    'restore aborted in phase verify: hook beforeHandoff did not finish within 1500 ms',
  );
  assert.equal(signal?.aborted, true, 'the hook was told to stop');
  assert.ok(Date.now() - t0 >= 1500);
});

test('hooks that are not functions, or unknown hook names, are refused before anything starts', async (t) => {
  const { image, dir } = await buildAndDump(t, alive);
  for (const [hooks, message] of [
    [{ verified: 'echo' }, /^restore option hooks\.verified: .* is not a function$/],
    [{ afterAll: () => {} }, /^restore option hooks: .*afterAll.* is not a hook name/],
    [42, /^restore option hooks: 42 is not an object of hooks$/],
  ] as const) {
    const err = await failsClean(dir, () =>
      restoreImage(image, { runDirParent: dir, hooks: hooks as never }),
    );
    assert.equal(err.code, 'PCR_ERR_USAGE');
    assert.match(err.message, message);
  }
});
