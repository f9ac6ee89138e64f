/**
 * Every scenario of test/fixtures/scenarios.ts: build the real tree, dump it, restore it
 * with hold, then check the RESTORED processes from the outside (/proc, kcmp,
 * pidfd_getfd + PIDFD_GET_INFO; test/helpers/restored-view.ts): tree shape, every fd's
 * number, flags, cloexec, target, exit status, same-target and same-file classes,
 * zombies. Then take it down and check nothing is left: no process, no run directory.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildTree } from '../../src/testing/index.js';
import { dumpTree } from '../../src/dump/index.js';
import { restoreImage } from '../../src/restore/restore-image.js';
import type { PidMap } from '../../src/protocol/messages.js';
import { SCENARIOS, deadStatuses } from '../fixtures/scenarios.js';
import { checkRestored } from '../helpers/restored-view.js';
import { hasDacOverride } from '../../src/sys/open-files.js';
import { descendantsOf, exists } from '../helpers/proc-view.js';

interface View {
  pidMap: PidMap;
  problems: string[];
  swappedProblems: string[];
  everyone: number[];
}

/**
 * Scenarios the planner refuses by design here, with the reason it must give: other
 * access modes need a /proc/self/fd reopen, which needs CAP_DAC_OVERRIDE.
 */
const REFUSED: Record<string, RegExp> = hasDacOverride()
  ? {}
  : { accessModes: /cannot restore faithfully: .*CAP_DAC_OVERRIDE/ };

for (const { name, spec } of SCENARIOS) {
  test(`restore ${name}: the restored tree matches the image from /proc, nothing left after`, async (t) => {
    const tree = await buildTree(spec);
    t.after(() => tree.destroy());
    const image = await dumpTree(tree.rootPid);
    const parent = mkdtempSync(join(tmpdir(), 'pcr-restore-test-'));
    t.after(() => rmSync(parent, { recursive: true, force: true }));

    const refused = REFUSED[name];
    if (refused) {
      await assert.rejects(restoreImage(image, { runDirParent: parent }), refused);
      assert.deepEqual(readdirSync(parent), []);
      return;
    }

    const stop = new AbortController();
    let verified!: (v: View) => void;
    const seen = new Promise<View>((r) => (verified = r));
    const restoring = restoreImage(image, {
      hold: true,
      signal: stop.signal,
      runDirParent: parent,
      timeoutMs: 60_000,
      onVerified: ({ pidMap }) => {
        const root = pidMap.pids.find((p) => p.dumped === image.rootPid)!.restored;
        const [a, b, ...rest] = pidMap.pids;
        const swapped: PidMap =
          a && b
            ? {
                ...pidMap,
                pids: [{ ...a, restored: b.restored }, { ...b, restored: a.restored }, ...rest],
              }
            : pidMap;
        verified({
          pidMap,
          problems: checkRestored(image, pidMap, process.pid),
          swappedProblems: checkRestored(image, swapped, process.pid),
          everyone: [root, ...descendantsOf(root)],
        });
      },
    });
    restoring.catch(() => {}); // awaited below
    const view = await Promise.race([seen, restoring.then(() => null)]);
    stop.abort('test done');
    const result = await restoring;
    assert.ok(view, 'verification ran');
    assert.deepEqual(view.problems, []);
    if (view.pidMap.pids.length >= 2) {
      // The outside check is not blind: a pid map with two tasks swapped must fail it.
      assert.notDeepEqual(view.swappedProblems, [], 'a wrong pid map is caught');
    }
    assert.deepEqual(result.differences, []);
    assert.equal(result.ok, true);
    assert.equal(view.everyone.length >= image.tasks.length, true);
    for (const pid of view.everyone) assert.equal(exists(pid), false, `process ${pid} is gone`);
    assert.deepEqual(readdirSync(parent), [], 'run directory removed');
  });
}

test('restore pidfds at fds 0, 1, 2 and 5000 (the worker own stdio is given up for them)', async (t) => {
  const tree = await buildTree(deadStatuses);
  t.after(() => tree.destroy());
  const image = await dumpTree(tree.rootPid);
  // The same files at other numbers: what a task with pidfds on its stdio would hold.
  const remap = new Map([
    [3, 0],
    [4, 1],
    [5, 2],
    [6, 5000],
  ]);
  for (const task of image.tasks) {
    task.fds = task.fds
      .map((f) => ({ ...f, fd: remap.get(f.fd) ?? f.fd }))
      .sort((a, b) => a.fd - b.fd);
  }
  const stop = new AbortController();
  let problems: string[] | undefined;
  const result = await restoreImage(image, {
    hold: true,
    signal: stop.signal,
    onVerified: ({ pidMap }) => {
      problems = checkRestored(image, pidMap, process.pid);
      stop.abort('checked');
    },
  });
  assert.deepEqual(problems, []);
  assert.equal(result.ok, true, JSON.stringify(result.differences));
});
