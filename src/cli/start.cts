/**
 * Runs the bundled command line (`cli.cjs`, made by scripts/build.mjs from main.ts) with
 * V8's code cache (worker/code-cache.cts). One cache per command, `cli.cjs.<command>.cache`,
 * written by the first successful run of that command: each holds the code its command
 * ran, so a `dump` does not start from a cache that a `show` wrote. A read-only install
 * runs uncached.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { runBundle } from '../worker/code-cache.cjs';

const COMMANDS = new Set(['dump', 'show', 'restore', 'demo', 'trace', 'machines']);

/** Runs cli.cjs if it exists (true); false when there is no bundle. */
export function startBundled(): boolean {
  const bundle = join(__dirname, 'cli.cjs');
  if (!existsSync(bundle)) return false;
  const argv = process.argv.slice(2);
  const command = COMMANDS.has(argv[0] ?? '') ? argv[0]! : 'other';
  // A help text runs little of the command: a cache written then would lack the rest.
  const help = argv.includes('--help') || argv.includes('-h');
  runBundle(bundle, () => !help, `${bundle}.${command}.cache`);
  return true;
}
