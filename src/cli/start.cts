/**
 * Runs the bundled command line with V8's code cache (worker/code-cache.cts): for
 * `pidfd-cr dump …` the dump's own bundle (`dump.cjs`, from dump-main.ts: only the dump's
 * code), for every other command `cli.cjs` (main.ts, every command), both made by
 * scripts/build.mjs. One cache per command: `dump.cjs.cache`, `cli.cjs.<command>.cache`,
 * written by the first successful run of that command; each holds the code its command
 * ran, so a `show` does not start from a cache that a `restore` wrote. A read-only
 * install runs uncached.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { runBundle } from '../worker/code-cache.cjs';

const COMMANDS = new Set(['dump', 'show', 'restore', 'demo', 'trace', 'machines']);
/** Commands with a bundle of their own (in this directory). */
const OWN_BUNDLE: Record<string, string> = { dump: 'dump.cjs' };

/** Runs a bundle if there is one (true); false when there is none. */
export function startBundled(): boolean {
  const argv = process.argv.slice(2);
  const command = COMMANDS.has(argv[0] ?? '') ? argv[0]! : 'other';
  // A help text runs little of the command: a cache written then would lack the rest.
  const help = argv.includes('--help') || argv.includes('-h');
  const own = OWN_BUNDLE[command] && join(__dirname, OWN_BUNDLE[command]);
  if (own && existsSync(own)) {
    runBundle(own, () => !help);
    return true;
  }
  const bundle = join(__dirname, 'cli.cjs');
  if (!existsSync(bundle)) return false;
  runBundle(bundle, () => !help, `${bundle}.${command}.cache`);
  return true;
}
