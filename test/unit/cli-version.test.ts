/** `pidfd-cr --version`, `-V` and `version`: the version of the package.json next to dist/. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const PKG = new URL('../../../package.json', import.meta.url);

const cli = (...args: string[]) =>
  spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', timeout: 30_000 });

test('--version, -V and version print the package version alone', () => {
  const { version } = JSON.parse(readFileSync(PKG, 'utf8')) as { version: string };
  assert.match(version, /^\d+\.\d+\.\d+/);
  for (const flag of ['--version', '-V', 'version']) {
    const r = cli(flag);
    assert.equal(r.status, 0, `${flag}: ${r.stderr}`);
    assert.equal(r.stdout, `${version}\n`, flag);
    assert.equal(r.stderr, '', flag);
  }
});

test('--version with an argument is a usage error naming the flag', () => {
  const r = cli('--version', 'extra');
  assert.equal(r.status, 2);
  assert.equal(r.stdout, '');
  assert.equal(r.stderr, 'pidfd-cr: --version takes no arguments\n');
});

test('the usage text lists the version command', () => {
  const r = cli('--help');
  assert.equal(r.status, 0);
  assert.match(r.stdout, /^ {2}version, --version, -V {2,}print the version of pidfd-cr$/m);
});
