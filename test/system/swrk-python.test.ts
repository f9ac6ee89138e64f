/**
 * The reference Python host (examples/swrk-client.py, Debian's python3-protobuf and
 * protoc) drives `pidfd-cr swrk` through dump -> held restore -> acknowledged
 * notifications -> pid map -> teardown on a real tree; what it reports is checked against
 * the image and, from outside, against /proc (the restored tree is gone afterwards).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { buildTree } from '../../src/testing/index.js';
import { readImage } from '../../src/image/store.js';
import { alive } from '../fixtures/scenarios.js';
import { CLI } from '../fixtures/dump-helpers.js';
import { waitGone } from '../helpers/restore-run.js';

const ROOT = resolve(new URL('../../..', import.meta.url).pathname);
const CLIENT = join(ROOT, 'examples', 'swrk-client.py');

interface Summary {
  notifications: { hook: string; script: string; root: number; root_pidfds: number }[];
  version: string;
  dump: { tasks: number; pidfds: number };
  held?: boolean;
  ok?: boolean;
  pid_map?: Record<string, number>;
  alive_while_held?: boolean;
  torn_down?: boolean;
  service_exit: number;
  error?: { code: string; exit_status: number; message: string };
}

async function runClient(pid: number, dir: string, extra: string[] = []) {
  const child = spawn(
    '/usr/bin/python3',
    [
      CLIENT,
      '--pid',
      String(pid),
      '--dir',
      dir,
      '--pidfd-cr',
      `${process.execPath} ${CLI}`,
      '--proto-dir',
      join(ROOT, 'proto'),
      ...extra,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, summary: out === '' ? undefined : (JSON.parse(out) as Summary), stderr: err };
}

async function fresh(t: { after(fn: () => unknown): void }) {
  const tree = await buildTree(alive);
  t.after(() => tree.destroy());
  const dir = mkdtempSync(join(tmpdir(), 'pcr-swrk-py-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return { tree, dir };
}

test('Python host: dump, held restore with acknowledged notifications, pid map, teardown', async (t) => {
  const { tree, dir } = await fresh(t);
  const { code, summary, stderr } = await runClient(tree.rootPid, dir);
  assert.equal(code, 0, stderr);
  assert.ok(summary);
  const image = readImage(dir);
  const rootFds = image.tasks.find((x) => x.pid === image.rootPid)!.fds.length;
  assert.ok(rootFds > 0);
  assert.deepEqual(summary.dump, {
    tasks: image.tasks.length,
    pidfds: image.tasks.reduce((n, x) => n + x.fds.length, 0),
  });
  const map = summary.pid_map!;
  assert.deepEqual(Object.keys(map).map(Number).sort(), image.tasks.map((x) => x.pid).sort());
  const root = map[String(image.rootPid)]!;
  assert.deepEqual(
    summary.notifications.map((n) => [n.hook, n.script, n.root, n.root_pidfds]),
    [
      ['treeBuilt', 'post-setup-namespaces', root, 0],
      ['verified', 'post-restore', root, rootFds],
      ['beforeHandoff', 'pre-resume', root, rootFds],
      ['beforeTeardown', 'pre-teardown', root, rootFds],
    ],
  );
  assert.equal(summary.held, true);
  assert.equal(summary.ok, true);
  assert.equal(summary.alive_while_held, true);
  assert.equal(summary.torn_down, true);
  assert.equal(summary.service_exit, 0);
  assert.deepEqual(await waitGone(Object.values(map)), [], 'the restored tree is gone');
  assert.deepEqual(readdirSync(dir), ['pidfd-cr.img']);
});

test('Python host: an abort answer fails the restore with the code and the reason', async (t) => {
  const { tree, dir } = await fresh(t);
  const { code, summary, stderr } = await runClient(tree.rootPid, dir, ['--abort-at', 'verified']);
  assert.equal(code, 1, stderr);
  assert.deepEqual(summary?.error, {
    code: 'PCR_ERR_HOOK_ABORTED',
    exit_status: 23,
    message:
      'restore aborted in phase verify: hook verified aborted the restore: the host: client aborts at verified',
  });
  assert.equal(summary?.service_exit, 0);
  const image = readImage(dir);
  const restoredRoot = summary!.notifications[0]!.root;
  assert.equal(summary!.notifications.length, 2);
  assert.ok(image.tasks.length > 0);
  assert.deepEqual(await waitGone([restoredRoot]), []);
});
