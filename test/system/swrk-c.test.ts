/**
 * The reference C host (examples/swrk-client.c, protobuf-c) is built with protoc-c and cc
 * from proto/swrk.proto and drives `pidfd-cr swrk` through dump -> held restore ->
 * acknowledged notifications -> pid map -> teardown on a real tree; its pid map is
 * checked against the image and the restored tree is gone afterwards (from /proc).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
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

function must(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')}: ${r.error?.message ?? r.stderr}`);
}

test('C host (protobuf-c): dump, held restore with acknowledged notifications, pid map, teardown', async (t) => {
  const build = mkdtempSync(join(tmpdir(), 'pcr-swrk-c-'));
  t.after(() => rmSync(build, { recursive: true, force: true }));
  must('protoc-c', [`--proto_path=${join(ROOT, 'proto')}`, `--c_out=${build}`, 'swrk.proto']);
  const exe = join(build, 'swrk-client');
  must('cc', [
    '-Wall',
    '-Werror',
    '-I',
    build,
    '-o',
    exe,
    join(ROOT, 'examples', 'swrk-client.c'),
    join(build, 'swrk.pb-c.c'),
    '-lprotobuf-c',
  ]);
  const tree = await buildTree(alive);
  t.after(() => tree.destroy());
  const dir = mkdtempSync(join(tmpdir(), 'pcr-swrk-c-img-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const child = spawn(exe, [String(tree.rootPid), dir, process.execPath, CLI], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const [code] = (await once(child, 'exit')) as [number | null];
  assert.equal(code, 0, `${out}\n${err}`);
  const image = readImage(dir);
  const lines = out.trimEnd().split('\n');
  const restored = lines
    .filter((l) => l.startsWith('restored '))
    .map((l) => l.split(' ').slice(1).map(Number) as [number, number]);
  assert.deepEqual(restored.map(([d]) => d).sort(), image.tasks.map((x) => x.pid).sort());
  const root = restored.find(([d]) => d === image.rootPid)![1];
  const fds = image.tasks.reduce((n, x) => n + x.fds.length, 0);
  assert.deepEqual(
    lines.filter((l) => !l.startsWith('restored ')),
    [
      `version ${spawnSync(process.execPath, [CLI, '--version'], { encoding: 'utf8' }).stdout.trim()}`,
      `dump ${image.tasks.length} ${fds}`,
      `notify treeBuilt post-setup-namespaces ${root}`,
      `notify verified post-restore ${root}`,
      `notify beforeHandoff pre-resume ${root}`,
      'held 1 1',
      `notify beforeTeardown pre-teardown ${root}`,
      'teardown',
    ],
  );
  assert.deepEqual(await waitGone(restored.map(([, r]) => r)), [], 'the restored tree is gone');
  assert.deepEqual(readdirSync(dir), ['pidfd-cr.img']);
});
