/**
 * pidfd-cr as a host installs it: `npm pack` of this checkout, the tarball installed into
 * a fresh project (`npm init -y`, `npm install <tarball>` from the warm npm cache), then
 * the API imported (and type-checked) from 'pidfd-cr', `npx pidfd-cr --version`, and a
 * real dump + restore of a tree holding a pidfd through the installed CLI — once with the
 * installed package read-only (a read-only bind mount as root: root ignores mode bits).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { holdPidfd, startNode } from '../helpers/holder.js';

const ROOT = resolve(new URL('../../..', import.meta.url).pathname);
const { version: VERSION } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  version: string;
};

/**
 * The environment of the npm commands: an `npm test` run exports its own config and
 * package (npm_config_local_prefix, npm_package_*), which must not point the nested npm
 * at this checkout; the cache and registry settings stay.
 */
const KEEP_NPM = new Set(['npm_config_cache', 'npm_config_registry', 'npm_config_userconfig']);
const ENV = Object.fromEntries(
  Object.entries(process.env).filter(
    ([k]) => !k.toLowerCase().startsWith('npm_') || KEEP_NPM.has(k.toLowerCase()),
  ),
);

function run(cmd: string, args: string[], cwd: string): SpawnSyncReturns<string> {
  const r = spawnSync(cmd, args, {
    cwd,
    encoding: 'utf8',
    timeout: 180_000,
    env: { ...ENV, npm_config_update_notifier: 'false', TMPDIR: cwd },
  });
  if (r.error) throw r.error;
  return r;
}

function ok(r: SpawnSyncReturns<string>, what: string): string {
  assert.equal(
    r.status,
    0,
    `${what}: exit ${r.status} ${r.signal ?? ''}\n${r.stdout}\n${r.stderr}`,
  );
  return r.stdout;
}

/** Every file under `dir` (relative paths). */
function walk(dir: string, prefix = ''): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(join(dir, e.name), `${prefix}${e.name}/`) : [`${prefix}${e.name}`],
  );
}

test('the packed tarball installs into a fresh project and dumps and restores from there', async (t) => {
  const tmp = mkdtempSync(join(tmpdir(), 'pcr-package-test-'));
  t.after(() => rmSync(tmp, { recursive: true, force: true }));

  // Pack: only what runs, and everything that does.
  const packed = JSON.parse(
    ok(run('npm', ['pack', '--json', '--pack-destination', tmp], ROOT), 'npm pack'),
  ) as { filename: string; files: { path: string }[] }[];
  const files = packed[0]!.files.map((f) => f.path);
  for (const needed of [
    'package.json',
    'README.md',
    'dist/gen/pb.js',
    'dist/gen/pb.d.ts',
    'dist/src/index.js',
    'dist/src/index.d.ts',
    'dist/src/cli/main.js',
    'dist/src/cli/bin.cjs',
    'dist/src/cli/start.cjs',
    'dist/src/cli/cli.cjs',
    'dist/src/cli/dump.cjs',
    'dist/src/worker/start.cjs',
    'dist/src/worker/code-cache.cjs',
    'dist/src/worker/cache-mark.cjs',
    'dist/src/worker/bundle.cjs',
    'dist/src/testing/task-main.js',
    'dist/native/index.js',
    'proto/image.proto',
    'proto/protocol.proto',
    'proto/swrk.proto',
    'proto/handoff.proto',
    'examples/pidfd-cr-cloexec.c',
  ]) {
    assert.ok(files.includes(needed), `tarball lacks ${needed}`);
  }
  const stray = files.filter(
    (f) =>
      /^(test|bench|src|native|scripts|gen|docs|\.ci|dist\/test|dist\/bench)\//.test(f) ||
      /\.(map|cache|tsbuildinfo)$/.test(f) ||
      (/\.c?ts$/.test(f) && !/\.d\.c?ts$/.test(f)),
  );
  assert.deepEqual(stray, [], 'files that do not run are not shipped');

  // A fresh project with the tarball installed (npm's cache is warm after `npm ci`).
  const app = join(tmp, 'app');
  mkdirSync(app);
  ok(run('npm', ['init', '-y'], app), 'npm init');
  const tarball = join(tmp, packed[0]!.filename);
  ok(
    run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', tarball], app),
    'npm install',
  );
  const pkg = join(app, 'node_modules', 'pidfd-cr');
  const bin = join(app, 'node_modules', '.bin', 'pidfd-cr');

  // The API by its package name, through the exports map.
  const api = ok(
    run(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `const m = await import('pidfd-cr');
         const { version } = (await import('pidfd-cr/package.json', { with: { type: 'json' } })).default;
         const { createRequire } = await import('node:module');
         const proto = createRequire(process.cwd() + '/').resolve('pidfd-cr/proto/image.proto');
         const testing = await import('pidfd-cr/testing');
         console.log(typeof m.restoreImage, typeof m.dumpTree, typeof m.readImage, typeof testing.buildTree, version, proto);`,
      ],
      app,
    ),
    'import',
  );
  assert.equal(
    api,
    `function function function function ${VERSION} ${join(pkg, 'proto', 'image.proto')}\n`,
  );
  // A deep import of a dist path is not part of the API.
  const deep = run(
    process.execPath,
    ['--input-type=module', '-e', `await import('pidfd-cr/dist/src/index.js')`],
    app,
  );
  assert.notEqual(deep.status, 0);
  assert.match(deep.stderr, /ERR_PACKAGE_PATH_NOT_EXPORTED/);

  // The types come with it: restoreImage is typed (were it `any`, the expected error
  // below would be missing, itself an error).
  writeFileSync(
    join(app, 'check.ts'),
    `import { restoreImage, readImage, type RestoreResult } from 'pidfd-cr';
const image = readImage('/nonexistent');
const run: Promise<RestoreResult> = restoreImage(image, { hold: false });
void run;
// @ts-expect-error an image is not a number
void restoreImage(42);
`,
  );
  ok(
    run(
      process.execPath,
      [
        join(ROOT, 'node_modules/typescript/bin/tsc'),
        '--noEmit',
        '--strict',
        '--skipLibCheck', // as hosts do; the shipped .d.ts imports are checked below
        '--module',
        'nodenext',
        '--moduleResolution',
        'nodenext',
        '--target',
        'es2022',
        '--typeRoots',
        join(ROOT, 'node_modules/@types'),
        '--types',
        'node',
        'check.ts',
      ],
      app,
    ),
    'tsc check.ts',
  );

  // Every relative import of a shipped declaration file names a shipped one (the
  // generated protobuf types included: dist/src/**/*.d.ts import ../../gen/pb.js).
  const declarations = files.filter((f) => /\.d\.c?ts$/.test(f));
  const unresolved = declarations.flatMap((f) =>
    [...readFileSync(join(pkg, f), 'utf8').matchAll(/(?:from |import\()'(\.\.?\/[^']+)'/g)]
      .map((m) =>
        join(dirname(f), m[1]!)
          .replace(/\.js$/, '.d.ts')
          .replace(/\.cjs$/, '.d.cts'),
      )
      .filter((d) => !files.includes(d))
      .map((d) => `${f} -> ${d}`),
  );
  assert.ok(declarations.length > 50);
  assert.deepEqual(unresolved, []);

  // The CLI as npx finds it.
  assert.equal(
    ok(run('npx', ['pidfd-cr', '--version'], app), 'npx pidfd-cr --version'),
    `${VERSION}\n`,
  );

  // A real tree: a process holding a pidfd (fd 7) to a live process outside it.
  const target = startNode(t, 'setInterval(() => {}, 1e9);');
  const holder = await holdPidfd(t, target, 0, 7);
  const img = join(tmp, 'img');
  mkdirSync(img);
  const dumped = ok(
    run(process.execPath, [bin, 'dump', '-t', String(holder), '-D', img], app),
    'dump',
  );
  assert.match(dumped, /1 task/);

  // The CLI's code caches, one per command run so far, written into the writable install.
  const caches = (): string[] =>
    walk(pkg)
      .filter((f) => f.includes('.cache'))
      .sort();
  const cliCaches = caches();
  assert.deepEqual(cliCaches, ['dist/src/cli/cli.cjs.other.cache', 'dist/src/cli/dump.cjs.cache']);

  // Restore with the installed package read-only: the workers' code cache is not
  // written (nor the restore command's), and nothing else needs to be.
  const readOnly =
    process.getuid?.() === 0
      ? run(
          'unshare',
          [
            '--mount',
            '--propagation',
            'private',
            'sh',
            '-ec',
            'mount --bind "$1" "$1"; mount -o remount,bind,ro "$1"; ' +
              'if touch "$1/.probe" 2>/dev/null; then echo "$1: still writable" >&2; exit 99; fi; ' +
              'shift; exec "$@"',
            'sh',
            pkg,
            process.execPath,
            bin,
            'restore',
            '-D',
            img,
          ],
          app,
        )
      : (() => {
          ok(run('chmod', ['-R', 'a-w', pkg], app), 'chmod');
          t.after(() => run('chmod', ['-R', 'u+w', pkg], app));
          return run(process.execPath, [bin, 'restore', '-D', img], app);
        })();
  const restored = ok(readOnly, 'restore (read-only package)');
  assert.match(restored, new RegExp(`^ +${holder} -> +\\d+ +node$`, 'm'));
  assert.match(restored, /^verification: OK, 1 pidfd in 1 task match the image$/m);
  assert.deepEqual(caches(), cliCaches, 'nothing written into a read-only package');

  // And writable, through npx, with the built-in example's richer tree.
  const demo = ok(run('npx', ['pidfd-cr', 'demo'], app), 'npx pidfd-cr demo');
  assert.match(demo, /^verification: OK, \d+ pidfds in \d+ tasks match the image$/m);
});
