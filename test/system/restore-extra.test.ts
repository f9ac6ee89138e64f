/**
 * Restores that the scenario suite does not cover, checked from the outside (/proc,
 * test/helpers/restored-view.ts): files with access mode 03 (made by open_by_handle_at);
 * the outside check sees a pidfd the image does not have; two restores at once.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildTree, type TreeSpec } from '../../src/testing/index.js';
import { dumpTree } from '../../src/dump/index.js';
import { FLAGS, type Image } from '../../src/model/image.js';
import { restoreImage } from '../../src/restore/restore-image.js';
import type { PidMap } from '../../src/protocol/messages.js';
import {
  alive,
  benchmark,
  deadStatuses,
  external,
  nonblocking,
  zombieTarget,
} from '../fixtures/scenarios.js';
import { checkRestored } from '../helpers/restored-view.js';
import { descendantsOf, exists, fdinfo } from '../helpers/proc-view.js';

type After = { after(fn: () => unknown): void };

interface Seen {
  pidMap: PidMap;
  problems: string[];
  /** checkRestored against the image without its first fd: the restored fd is extra. */
  lessProblems: string[];
  /** f_flags (without O_CLOEXEC) of every image fd, read from /proc of the restored tree. */
  flags: number[];
  everyone: number[];
}

async function dump(t: After, spec: TreeSpec): Promise<{ image: Image; parent: string }> {
  const tree = await buildTree(spec);
  t.after(() => tree.destroy());
  const image = await dumpTree(tree.rootPid);
  const parent = mkdtempSync(join(tmpdir(), 'pcr-extra-test-'));
  t.after(() => rmSync(parent, { recursive: true, force: true }));
  return { image, parent };
}

/** Restores with hold, checks from /proc in onVerified, then takes the tree down. */
async function restoreAndCheck(image: Image, parent: string) {
  const stop = new AbortController();
  let seen: Seen | undefined;
  const result = await restoreImage(image, {
    hold: true,
    signal: stop.signal,
    runDirParent: parent,
    timeoutMs: 60_000,
    onVerified: ({ pidMap }) => {
      const r = (d: number) => pidMap.pids.find((p) => p.dumped === d)!.restored;
      const root = r(image.rootPid);
      seen = {
        pidMap,
        problems: checkRestored(image, pidMap, process.pid),
        lessProblems: checkRestored(withoutFirstFd(image), pidMap, process.pid),
        flags: image.tasks.flatMap((t) =>
          t.state === 'zombie'
            ? []
            : t.fds.map((f) => fdinfo(r(t.pid), f.fd).flags & ~FLAGS.O_CLOEXEC),
        ),
        everyone: [root, ...descendantsOf(root)],
      };
      stop.abort('checked');
    },
  });
  return { result, seen };
}

/** A copy of `image` whose first task holding pidfds lost its first fd. */
function withoutFirstFd(image: Image): Image {
  const copy = structuredClone(image);
  const task = copy.tasks.find((t) => t.fds.length > 0)!;
  task.fds = task.fds.slice(1);
  return copy;
}

/** Every pidfd_open-made file (02, 02|O_NONBLOCK) becomes access mode 03. */
function toAccessMode3(image: Image): number {
  let changed = 0;
  for (const f of image.files) {
    if ((f.flags & ~FLAGS.O_NONBLOCK) === FLAGS.O_RDWR) {
      f.flags = FLAGS.O_ACCMODE | (f.flags & FLAGS.O_NONBLOCK);
      changed++;
    }
  }
  return changed;
}

for (const [name, spec] of Object.entries({
  alive,
  nonblocking,
  zombieTarget,
  deadStatuses,
  external,
})) {
  test(`restore ${name} with every file at access mode 03 (open_by_handle_at O_WRONLY)`, async (t) => {
    const { image, parent } = await dump(t, spec);
    assert.ok(toAccessMode3(image) > 0, 'the image has files to turn into 03');
    const { result, seen } = await restoreAndCheck(image, parent);
    assert.ok(seen, 'verification ran');
    assert.deepEqual(seen.problems, []);
    assert.equal(result.ok, true, JSON.stringify(result.differences));
    const threes = seen.flags.filter((f) => (f & FLAGS.O_ACCMODE) === FLAGS.O_ACCMODE);
    assert.ok(threes.length > 0, '/proc shows files with access mode 03');
    assert.ok(
      threes.every((f) => (f & ~(FLAGS.O_ACCMODE | FLAGS.O_NONBLOCK)) === 0),
      `no other flag on them: ${threes.map((f) => f.toString(8))}`,
    );
    for (const pid of seen.everyone) assert.equal(exists(pid), false, `process ${pid} is gone`);
    assert.deepEqual(readdirSync(parent), [], 'run directory removed');
  });
}

test('the outside check names a restored pidfd that the image does not have', async (t) => {
  const { image, parent } = await dump(t, alive);
  const { result, seen } = await restoreAndCheck(image, parent);
  assert.ok(seen, 'verification ran');
  assert.equal(result.ok, true, JSON.stringify(result.differences));
  assert.deepEqual(seen.problems, []);
  const task = image.tasks.find((x) => x.fds.length > 0)!;
  const fd = task.fds[0]!.fd;
  assert.ok(
    seen.lessProblems.some((p) =>
      new RegExp(
        `^task ${task.pid} \\(restored \\d+\\) fd ${fd}: a pidfd .* not in the image$`,
      ).test(p),
    ),
    `extra fd ${fd} of task ${task.pid} is named: ${JSON.stringify(seen.lessProblems)}`,
  );
});

test('two restores of one image at once: both trees right from /proc, separate run dirs, no crossing', async (t) => {
  const { image, parent } = await dump(t, benchmark);
  const stops = [new AbortController(), new AbortController()];
  const maps: Array<(m: PidMap) => void> = [];
  const verified = stops.map(() => new Promise<PidMap>((r) => maps.push(r)));
  const runs = stops.map((stop, i) =>
    restoreImage(image, {
      hold: true,
      signal: stop.signal,
      runDirParent: parent,
      timeoutMs: 60_000,
      onVerified: ({ pidMap }) => maps[i]!(pidMap),
    }),
  );
  t.after(() => stops.forEach((s) => s.abort('test over')));
  for (const run of runs) run.catch(() => {}); // awaited below
  const [a, b] = await Promise.race([
    Promise.all(verified),
    Promise.all(runs).then(() => assert.fail('a restore ended before both were verified')),
  ]);
  // Both trees are held now: check each from the outside against the same image.
  const runDirs = readdirSync(parent);
  const problems = [a!, b!].map((m) => checkRestored(image, m, process.pid));
  const rootOf = (m: PidMap) => m.pids.find((p) => p.dumped === image.rootPid)!.restored;
  const trees = [a!, b!].map((m) => new Set(descendantsOf(rootOf(m))));
  stops.forEach((s) => s.abort('checked'));
  const [ra, rb] = await Promise.all(runs);
  assert.deepEqual(problems, [[], []]);
  assert.equal(runDirs.length, 2, `one run directory per restore: ${runDirs}`);
  assert.notEqual(runDirs[0], runDirs[1]);
  [a!, b!].forEach((m, i) => {
    const other = i === 0 ? b! : a!;
    const mine = trees[i]!;
    for (const p of m.pids)
      if (p.dumped !== image.rootPid)
        assert.ok(mine.has(p.restored), `task ${p.dumped} of restore ${i} is in its tree`);
    for (const p of other.pids)
      assert.ok(!mine.has(p.restored), `restore ${i}'s tree holds no process of the other`);
  });
  assert.equal(ra!.ok, true, JSON.stringify(ra!.differences));
  assert.equal(rb!.ok, true, JSON.stringify(rb!.differences));
  assert.deepEqual(readdirSync(parent), [], 'both run directories removed');
});
