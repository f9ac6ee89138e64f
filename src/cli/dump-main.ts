/**
 * `pidfd-cr dump` on its own: the entry of the dump's bundle (dump.cjs, scripts/build.mjs),
 * which start.cts runs for `pidfd-cr dump …` instead of the whole command line (cli.cjs).
 * The same command as through main.ts, without the code of the other commands to read
 * and load (docs/restore.md "Dump speed").
 */
import { runCommandLine } from './shell.js';
import { run } from './commands/dump.js';

runCommandLine(run, process.argv.slice(3));
