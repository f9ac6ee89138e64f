/**
 * `pidfd-cr restore` on images a user may bring: a damaged file (exit 8, the field named),
 * an image from another boot with a target outside the tree (refused by name, restored
 * with --external-dead); and `--trace`: the timeline on stderr names the coordinator's
 * phases, and the creator of each dead group is its holder with the highest dumped pid.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeImage } from '../../src/image/store.js';
import type { Image } from '../../src/model/image.js';
import { demo, external, sharedScm } from '../fixtures/scenarios.js';
import { buildAndDump } from '../helpers/restore-run.js';
import { CLI } from '../fixtures/dump-helpers.js';

const IMAGE = 'pidfd-cr.img';

function restoreCli(dir: string, ...args: string[]) {
  return spawnSync(process.execPath, [CLI, 'restore', '-D', dir, ...args], {
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, TMPDIR: dir },
  });
}

test('a damaged image exits 8 and names the field at fault', async (t) => {
  const { image, dir } = await buildAndDump(t, sharedScm);
  writeImage(dir, image);
  const path = join(dir, IMAGE);
  const good = readFileSync(path);

  const flipped = Buffer.from(good);
  flipped[flipped.length - 1]! ^= 0xff; // one payload byte
  writeFileSync(path, flipped);
  const crc = restoreCli(dir);
  assert.equal(crc.status, 8, crc.stderr);
  assert.match(crc.stderr, /header\.crc32: CRC32 mismatch/);

  const magic = Buffer.from(good);
  magic.write('NOTANIMG', 0, 'latin1');
  writeFileSync(path, magic);
  const bad = restoreCli(dir);
  assert.equal(bad.status, 8, bad.stderr);
  assert.match(bad.stderr, /header\.magic: not a pidfd-cr image/);

  writeFileSync(path, good.subarray(0, good.length - 5));
  const short = restoreCli(dir);
  assert.equal(short.status, 8, short.stderr);
  assert.match(short.stderr, /header\.length|payload: truncated/);
  assert.deepEqual(readdirSync(dir), [IMAGE], 'nothing left behind');
});

test('an image from another boot: an external target is refused by name unless --external-dead', async (t) => {
  const { image, dir } = await buildAndDump(t, external);
  const other: Image = {
    ...image,
    host: { ...image.host, bootId: '00000000-0000-4000-8000-000000000000' },
  };
  writeImage(dir, other);
  const ext = image.targets.find((x) => x.kind === 'external')!;
  const refused = restoreCli(dir);
  assert.equal(refused.status, 9, refused.stderr);
  assert.match(
    refused.stderr,
    new RegExp(
      `external target pid ${ext.pid} .*ino ${ext.ino}.*cannot be reopened on another boot`,
    ),
  );
  const dead = restoreCli(dir, '--external-dead');
  assert.equal(dead.status, 0, dead.stderr);
  const nfds = image.tasks.reduce((n, task) => n + task.fds.length, 0);
  assert.match(
    dead.stdout,
    new RegExp(`verification: OK, ${nfds} pidfds in \\d+ tasks? match the image`),
  );
  assert.deepEqual(readdirSync(dir), [IMAGE], 'nothing left behind');
});

/** Per dead ino of the image: the highest dumped pid among the tasks holding it. */
function expectedCreators(image: Image): Set<number> {
  const files = new Map(image.files.map((f) => [f.id, f]));
  const creators = new Set<number>();
  for (const target of image.targets.filter((x) => x.kind === 'dead')) {
    const holders = image.tasks
      .filter((task) => task.fds.some((e) => files.get(e.fileId)?.ino === target.ino))
      .map((task) => task.pid);
    creators.add(Math.max(...holders));
  }
  return creators;
}

test('--trace prints the timeline on stderr; each dead group is created by its highest holder', async (t) => {
  const { image, dir } = await buildAndDump(t, demo);
  writeImage(dir, image);
  const r = restoreCli(dir, '--trace');
  assert.equal(r.status, 0, r.stderr);
  // One GO: the coordinator's phases state, then each task's own steps.
  assert.match(r.stderr, /coordinator .*-> phases\s/);
  for (const state of ['open-alive', 'wait-for-fd', 'kill-temp', 'finalizing', 'reporting']) {
    assert.match(r.stderr, new RegExp(`task:\\d+\\s+\\S+ -> ${state}\\s`), state);
  }
  const creators = expectedCreators(image);
  assert.ok(creators.size > 0, 'the demo tree has dead targets');
  const holdersOfDead = image.tasks.filter((task) =>
    task.fds.some((e) =>
      image.targets.some(
        (x) => x.kind === 'dead' && image.files.find((f) => f.id === e.fileId)?.ino === x.ino,
      ),
    ),
  );
  assert.ok(holdersOfDead.length > creators.size, 'some dead target has several holders');
  const seen = new Set(
    [...r.stderr.matchAll(/task:(\d+)\s+\S+ -> become-creator/g)].map((m) => Number(m[1])),
  );
  assert.deepEqual(seen, creators);
  assert.deepEqual(readdirSync(dir), [IMAGE], 'nothing left behind');
});
