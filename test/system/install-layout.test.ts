/**
 * pidfd-cr installed as a dependency: `app/node_modules/pidfd-cr/dist` with its own
 * dependencies hoisted next to it in `app/node_modules`. The worker bundle's direct path
 * to the koffi addon (found at build time, relative to this checkout) does not exist
 * there, so koffi's own loader must take over: the demo still restores. (Workers load no
 * zeromq; the CLI's bundle has the same fallback for both addons.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const ROOT = resolve(new URL('../../..', import.meta.url).pathname);

test('installed as a hoisted dependency, the workers load koffi through its own loader', (t) => {
  const app = mkdtempSync(join(tmpdir(), 'pcr-install-test-'));
  t.after(() => rmSync(app, { recursive: true, force: true }));
  const modules = join(app, 'node_modules');
  const pkg = join(modules, 'pidfd-cr');
  mkdirSync(pkg, { recursive: true });
  cpSync(join(ROOT, 'package.json'), join(pkg, 'package.json'));
  cpSync(join(ROOT, 'dist'), join(pkg, 'dist'), {
    recursive: true,
    filter: (src) => !src.endsWith('.cache'),
  });
  for (const dep of readdirSync(join(ROOT, 'node_modules'))) {
    if (dep.startsWith('.') || dep === 'pidfd-cr') continue;
    symlinkSync(join(ROOT, 'node_modules', dep), join(modules, dep));
  }
  const r = spawnSync(process.execPath, [join(pkg, 'dist/src/cli/main.js'), 'demo'], {
    cwd: app,
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, TMPDIR: app },
  });
  assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /verification: OK, \d+ pidfds in \d+ tasks match the image/);
  assert.equal(r.stderr, '');
});
