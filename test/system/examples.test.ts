/**
 * The runnable examples of docs/embedding.md, run as a reader would run them, on real
 * trees: examples/library-hooks.mjs (the library with hooks, imported as 'pidfd-cr') and
 * examples/action-script.sh (the CLI with --action-script and --status-fd). What they
 * print is checked against the image, and the restored tree is gone afterwards.
 * (examples/swrk-client.py is run by swrk-python.test.ts, the hand-off examples by
 * examples-handoff.test.ts.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { buildTree } from '../../src/testing/index.js';
import { readImage, writeImage } from '../../src/image/store.js';
import { alive } from '../fixtures/scenarios.js';
import { CLI } from '../fixtures/dump-helpers.js';
import { buildAndDump, waitGone } from '../helpers/restore-run.js';
import { descendantsOf } from '../helpers/proc-view.js';

const ROOT = resolve(new URL('../../..', import.meta.url).pathname);

async function runNode(args: string[]) {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], cwd: ROOT });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const [code] = (await once(child, 'exit')) as [number | null];
  return {
    code,
    lines: out
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as unknown),
    err,
  };
}

interface HookLine {
  hook: string;
  rootPid: number;
  rootPidfds: number;
  tasks: number;
  differences: number | null;
}

test('examples/library-hooks.mjs: hooks see the tree at each moment; an abort is exit 23', async (t) => {
  const tree = await buildTree(alive);
  t.after(() => tree.destroy());
  const dir = mkdtempSync(join(tmpdir(), 'pcr-example-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const script = join(ROOT, 'examples', 'library-hooks.mjs');
  const r = await runNode([script, String(tree.rootPid), dir]);
  assert.equal(r.code, 0, r.err);
  const image = readImage(dir);
  const rootFds = image.tasks.find((x) => x.pid === image.rootPid)!.fds.length;
  assert.ok(rootFds > 0);
  const hooks = r.lines.slice(0, 4) as HookLine[];
  const result = r.lines[4] as unknown as { ok: boolean; pidMap: { restored: number }[] };
  assert.equal(result.ok, true);
  const root = hooks[0]!.rootPid;
  assert.deepEqual(hooks, [
    {
      hook: 'treeBuilt',
      rootPid: root,
      rootPidfds: 0,
      tasks: image.tasks.length,
      differences: null,
    },
    {
      hook: 'verified',
      rootPid: root,
      rootPidfds: rootFds,
      tasks: image.tasks.length,
      differences: 0,
    },
    {
      hook: 'beforeHandoff',
      rootPid: root,
      rootPidfds: rootFds,
      tasks: image.tasks.length,
      differences: 0,
    },
    {
      hook: 'beforeTeardown',
      rootPid: root,
      rootPidfds: rootFds,
      tasks: image.tasks.length,
      differences: 0,
    },
  ]);
  assert.ok(result.pidMap.some((p) => p.restored === root));
  assert.deepEqual(await waitGone(result.pidMap.map((p) => p.restored)), []);

  const a = await runNode([script, String(tree.rootPid), dir, '--abort-at', 'treeBuilt']);
  assert.equal(a.code, 23, a.err);
  assert.deepEqual(a.lines[1], {
    error: 'PCR_ERR_HOOK_ABORTED',
    message:
      'restore aborted in phase spawn: hook treeBuilt aborted the restore: example aborts at treeBuilt',
  });
  assert.deepEqual(await waitGone([(a.lines[0] as unknown as HookLine).rootPid]), []);
});

test('examples/action-script.sh with restore --hold --status-fd: scripts at each hook, the byte, teardown', async (t) => {
  const { image, dir } = await buildAndDump(t, alive);
  writeImage(dir, image);
  const log = join(dir, 'actions.log');
  const child = spawn(
    process.execPath,
    [
      CLI,
      'restore',
      '-D',
      dir,
      '--hold',
      '--status-fd',
      '3',
      '--action-script',
      join(ROOT, 'examples', 'action-script.sh'),
    ],
    { stdio: ['ignore', 'pipe', 'pipe', 'pipe'], env: { ...process.env, PCR_EXAMPLE_LOG: log } },
  );
  t.after(() => child.kill('SIGKILL'));
  const status = child.stdio[3] as Readable;
  const bytes: Buffer[] = [];
  status.on('data', (d: Buffer) => bytes.push(d));
  await once(status, 'end');
  assert.deepEqual(Buffer.concat(bytes), Buffer.of(0), 'the tree is ready');
  const held = descendantsOf(child.pid!);
  child.kill('SIGTERM');
  const [code] = await once(child, 'exit');
  assert.equal(code, 0);
  assert.deepEqual(await waitGone(held), []);
  const rootFds = image.tasks.find((x) => x.pid === image.rootPid)!.fds.length;
  const lines = readFileSync(log, 'utf8').trimEnd().split('\n');
  const fields = lines.map((l) => l.split(' ').slice(0, 4));
  const root = fields[0]![2];
  assert.deepEqual(fields, [
    ['post-setup-namespaces', 'hook=treeBuilt', root, 'pidfds=0'],
    ['post-restore', 'hook=verified', root, `pidfds=${rootFds}`],
    ['pre-resume', 'hook=beforeHandoff', root, `pidfds=${rootFds}`],
    ['pre-teardown', 'hook=beforeTeardown', root, `pidfds=${rootFds}`],
  ]);
  const map = JSON.parse(lines[0]!.split(' map=')[1]!) as Record<string, number>;
  assert.equal(`root=${map[String(image.rootPid)]}`, root);
});
