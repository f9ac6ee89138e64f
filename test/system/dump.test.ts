/**
 * pidfd-cr dump on every example scenario: the tree is built for real (src/example),
 * dumped by the library and by the CLI, and the image must say exactly what the builder
 * says a correct dump says (fds, flags, cloexec, targets, exit statuses, sharing
 * classes). The freeze is checked from /proc while it holds, and the tree from /proc
 * afterwards (running, not traced; or stopped with --leave-stopped).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { buildTree, describeImage, type BuiltTree } from '../../src/testing/index.js';
import { dumpTree } from '../../src/dump/index.js';
import { readImage } from '../../src/image/store.js';
import type { Image } from '../../src/model/image.js';
import type { ImageJson } from '../../src/image/show.js';
import { bootId, kernelRelease } from '../../src/procfs/index.js';
import { SCENARIOS } from '../fixtures/scenarios.js';
import {
  cli,
  describeJson,
  liveTasks,
  procState,
  tempDir,
  waitForState,
} from '../fixtures/dump-helpers.js';
import { count } from '../../src/text.js';

const version = (
  JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  }
).version;

function checkHost(image: Image): void {
  assert.equal(image.host.bootId, bootId());
  assert.equal(image.host.kernelRelease, kernelRelease());
  assert.equal(image.host.freezeMethod, 'ptrace-seize');
  assert.equal(image.host.toolVersion, version);
  assert.ok(image.host.dumpTimeMs > 0);
}

/** Facts the expected description does not carry: tids, comm, argv. */
function checkTasks(image: Image, built: BuiltTree): void {
  for (const task of image.tasks) {
    assert.equal(task.tids[0], task.pid);
    assert.equal(task.tgid, task.pid);
    if (task.state === 'zombie') {
      assert.equal(task.comm, 'sh');
      continue;
    }
    assert.equal(task.comm, 'node');
    assert.match(task.argv[1] ?? '', /task-main\.js$/);
  }
  for (const [name, tids] of built.threadTids) {
    const task = image.tasks.find((t) => t.pid === built.pids.get(name));
    for (const tid of tids) assert.ok(task?.tids.includes(tid), `tid ${tid} of ${name}`);
  }
}

function assertRunningUntraced(built: BuiltTree): void {
  for (const pid of liveTasks(built.expected)) {
    const { state, tracer } = procState(pid);
    assert.ok('RS'.includes(state), `task ${pid} is in state ${state} after the dump`);
    assert.equal(tracer, 0, `task ${pid} is still traced by ${tracer}`);
  }
}

for (const { name, spec } of SCENARIOS) {
  test(`dump ${name}: the image says what the tree holds; the tree runs on`, async (t) => {
    const built = await buildTree(spec);
    t.after(() => built.destroy());
    const live = liveTasks(built.expected);
    let frozenSeen = 0;
    const image = await dumpTree(built.rootPid, {
      onFrozen: (tasks) => {
        assert.deepEqual(
          tasks.map((x) => x.pid).sort((a, b) => a - b),
          built.expected.tasks.map((x) => x.pid),
        );
        for (const pid of live) {
          assert.deepEqual(procState(pid), { state: 't', tracer: process.pid });
          frozenSeen++;
        }
      },
    });
    assert.equal(frozenSeen, live.length);
    assert.deepEqual(describeImage(image), built.expected);
    checkHost(image);
    checkTasks(image, built);
    assertRunningUntraced(built);

    const { dir, remove } = tempDir();
    t.after(remove);
    const r = cli(['dump', '-t', String(built.rootPid), '-D', dir]);
    assert.equal(r.status, 0, r.stderr);
    assert.ok(
      r.stdout.startsWith(`dumped ${count(built.expected.tasks.length, 'task')}, `),
      r.stdout,
    );
    assert.deepEqual(describeImage(readImage(dir)), built.expected);
    const show = cli(['show', '-D', dir, '--json']);
    assert.equal(show.status, 0, show.stderr);
    assert.deepEqual(describeJson(JSON.parse(show.stdout) as ImageJson), built.expected);
    assertRunningUntraced(built);
  });
}

for (const name of ['alive', 'threadLive', 'zombieTarget']) {
  test(`dump --leave-stopped ${name}: every live task is stopped afterwards`, async (t) => {
    const spec = SCENARIOS.find((s) => s.name === name)!.spec;
    const built = await buildTree(spec);
    t.after(() => built.destroy());
    const { dir, remove } = tempDir();
    t.after(remove);
    const r = cli(['dump', '-t', String(built.rootPid), '-D', dir, '--leave-stopped']);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(describeImage(readImage(dir)), built.expected);
    for (const pid of liveTasks(built.expected)) {
      assert.equal(await waitForState(pid, 'T'), 'T', `task ${pid}`);
      assert.equal(procState(pid).tracer, 0);
    }
    for (const task of built.expected.tasks.filter((x) => x.state === 'zombie')) {
      assert.equal(procState(task.pid).state, 'Z');
    }
  });
}
