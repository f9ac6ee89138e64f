/**
 * What the CLI needs to run, copied to a world-readable directory: the checkout may sit
 * in a directory other users cannot enter (root cloning into /root or a `mktemp -d`), and
 * uid 65534 must still load the CLI. dist/, package.json and the runtime packages of
 * package-lock.json (those not marked dev), so the copy runs as the installed package.
 * (The same as dump-errors.test.ts does for "dump as nobody".)
 */
import { chmodSync, cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CLI } from '../fixtures/dump-helpers.js';

export function worldReadableCli(): { cli: string; remove: () => void } {
  const root = fileURLToPath(new URL('../../../', import.meta.url));
  const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { dev?: boolean; link?: boolean }>;
  };
  const copy = mkdtempSync(join(tmpdir(), 'pcr-nobody-cli-'));
  chmodSync(copy, 0o755);
  cpSync(join(root, 'dist'), join(copy, 'dist'), { recursive: true });
  cpSync(join(root, 'package.json'), join(copy, 'package.json'));
  for (const [path, info] of Object.entries(lock.packages)) {
    if (path === '' || info.dev === true || info.link === true) continue;
    if (!existsSync(join(root, path))) continue;
    cpSync(join(root, path), join(copy, path), { recursive: true, dereference: true });
  }
  const cli = join(copy, relative(root, CLI));
  return { cli, remove: () => rmSync(copy, { recursive: true, force: true }) };
}
