/**
 * `pidfd-cr demo [--trace]`: builds the demo tree (src/example/demo.ts: alive, dead,
 * shared and zombie pidfds), dumps it to a temporary directory, restores it, verifies it
 * from /proc, prints the image, the pid map and the verification, and removes everything.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EXIT_CODES, PcrError } from '../../errors.js';
import { parseCommandArgs } from '../args.js';
import { buildTree, DEMO_TREE } from '../../testing/index.js';
import { dumpToDir } from '../../dump/index.js';
import { formatImage } from '../../image/show.js';
import { restoreImage } from '../../restore/restore-image.js';
import { traceOutputs } from '../trace-outputs.js';
import { formatPidMap, formatVerification, interruptedStatus, stopOnSignals } from './restore.js';
import { count } from '../../text.js';
import { abortOnOutputFailure } from '../output.js';
import { LOG_HELP, LOG_OPTIONS, cliLogger } from '../log.js';

const HELP = `usage: pidfd-cr demo [--trace] [--trace-file F] [--viz FILE] [-v] [--log-level LEVEL]
                     [--log-file F]

Builds a small tree of real processes holding pidfds of every common kind (to a live
task, to a process that exited with 7 and was reaped, to a zombie, shared over
SCM_RIGHTS, O_NONBLOCK, close-on-exec cleared), dumps it, restores it into new
processes, verifies the result from /proc, prints all of it and cleans up.
      --trace         print every event of the restore on stderr, in time order
      --trace-file F  write the restore's trace as NDJSON to F (docs/trace.md)
      --viz FILE      write the restore as one offline HTML page to FILE (docs/viz.md),
                      also when the restore fails
${LOG_HELP}
`;

export async function run(argv: string[]): Promise<number> {
  const values = parseCommandArgs('demo', argv, {
    trace: { type: 'boolean' },
    'trace-file': { type: 'string' },
    viz: { type: 'string' },
    ...LOG_OPTIONS,
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const log = await cliLogger('demo', values);
  const logger = log.logger ? { logger: log.logger } : {};
  const { trace, stderrTrace, traceFile, viz } = traceOutputs('demo', values);
  const controller = new AbortController();
  let dir: string | undefined;
  const removeDir = (): void => {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  };
  // SIGINT/SIGTERM stop the demo (building the tree, between steps, or the restore); a
  // second one removes the directories and exits at once. The demo tree leads its own
  // session (buildTree), like the restored one: a terminal's Ctrl-C reaches only us.
  const signals = stopOnSignals(controller, removeDir);
  const outputGuard = abortOnOutputFailure(controller);
  const stopped = (step: string): void => {
    if (controller.signal.aborted)
      throw new PcrError('PCR_ERR_RESTORE', `demo ${String(controller.signal.reason)} ${step}`);
  };
  let tree: Awaited<ReturnType<typeof buildTree>> | undefined;
  try {
    dir = mkdtempSync(join(tmpdir(), 'pidfd-cr-demo-'));
    tree = await buildTree(DEMO_TREE, { signal: controller.signal });
    stopped('after building the demo tree');
    const { image, path } = await dumpToDir(tree.rootPid, dir, logger);
    stopped('after dumping the demo tree');
    process.stdout.write(
      `built the demo tree (root pid ${tree.rootPid}) and dumped it to ${path}\n\n`,
    );
    process.stdout.write(formatImage(image) + '\n');
    const t0 = performance.now();
    const result = await restoreImage(image, {
      ...(trace ? { trace } : {}),
      ...logger,
      signal: controller.signal,
      // Orphans of the restored tree (if a worker dies) come back to us, not to init
      // (buildTree made us a subreaper for the demo tree's already).
      adoptOrphans: true,
      onVerified: ({ pidMap, differences }) => {
        const ms = (performance.now() - t0).toFixed(0);
        process.stdout.write(`restored ${count(pidMap.pids.length, 'task')} in ${ms} ms\n`);
        process.stdout.write(formatPidMap(image, pidMap));
        process.stdout.write(formatVerification(image, differences));
      },
    }).finally(() => stderrTrace?.flush()); // the trace before any error line
    process.stdout.write('restored tree taken down\n');
    await tree.destroy();
    tree = undefined;
    process.stdout.write('demo tree removed\n');
    return result.ok ? 0 : EXIT_CODES.PCR_ERR_VERIFY;
  } catch (err) {
    if (signals.received) return interruptedStatus(signals.received, err);
    throw err;
  } finally {
    traceFile?.close();
    await viz?.write();
    await tree?.destroy();
    removeDir();
    signals.unhook();
    outputGuard();
    log.close();
  }
}
