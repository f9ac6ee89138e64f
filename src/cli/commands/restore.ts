/**
 * `pidfd-cr restore -D DIR [--trace] [--trace-file F] [--pid-map FILE] [--hold]
 * [--timeout S] [--external-dead] [--max-processes N]`: restore the pidfds of an image into a fresh tree of
 * worker processes, verify them from /proc, print the pid map and the verification.
 */
import { closeSync, existsSync, openSync, readFileSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { EXIT_CODES, PcrError, UsageError } from '../../errors.js';
import { intOption, parseCommandArgs } from '../args.js';
import { imagePath, readImage } from '../../image/store.js';
import type { Image } from '../../model/image.js';
import { shellStatus } from '../../plan/status.js';
import { restoreImage, removeLiveRundirs } from '../../restore/restore-image.js';
import { traceOutputs } from '../trace-outputs.js';
import type { PidMap } from '../../protocol/messages.js';
import type { Difference } from '../../verify/compare.js';
import { count, printable } from '../../text.js';
import { restoredRoot, writePidFile } from '../pidfile.js';
import { abortOnOutputFailure } from '../output.js';
import { LOG_HELP, LOG_OPTIONS, cliLogger } from '../log.js';
import { checkActionScripts, checkStatusFd, cliHooks, signalReady } from '../restore-hooks.js';

const HELP = `usage: pidfd-cr restore -D DIR [--trace] [--trace-file F] [--pid-map FILE] [--hold]
                        [--timeout S] [--external-dead] [--max-processes N] [--pidfile F]
                        [--viz FILE] [--action-script PATH]... [--status-fd N]
                        [--exec JSON|@FILE [-d]] [--handoff-socket PATH]
                        [--same-pids] [--pidns new]
                        [-v] [--log-level LEVEL] [--log-file F]

Restores the pidfds of the image DIR/pidfd-cr.img: one worker process per dumped task,
in the dumped tree shape, each holding the dumped pidfds at the dumped fd numbers (alive,
zombie, dead with the recorded exit status, thread and external targets), then checks
every restored fd from /proc against the image and tears the tree down.
  -D, --dir DIR          the image directory
      --trace            print every event of the restore on stderr, in time order
      --trace-file F     write the trace as NDJSON to F (schema: docs/trace.md)
      --pid-map FILE     write {"<dumped pid>": restored pid} as JSON once verified
      --hold             keep the restored tree until SIGTERM or SIGINT, then take it down
      --timeout S        give up when registration or a phase takes longer (default 30)
      --external-dead    restore pidfds to processes outside the tree as dead (SIGKILL)
      --max-processes N  refuse an image that needs more processes (workers, zombies,
                         temporary processes; default 1024)
      --pidfile F        write the restored root's pid to F once verified
      --viz FILE         write the restore as one offline HTML page to FILE (docs/viz.md),
                         also when the restore fails
      --action-script PATH  run PATH at each hook (CRTOOLS_SCRIPT_ACTION=post-setup-
                         namespaces, post-restore, pre-resume, pre-teardown; repeatable);
                         a non-zero exit stops the restore (exit 23)
      --status-fd N      with --hold or --exec -d: write one byte to fd N once the held
                         tree is verified and ready (-d: every task exec'd), then close it
      --exec JSON|@FILE  after verification every task execs a program keeping its pidfds
                         at their numbers: ["/abs/prog","arg",…] for all tasks, or
                         {"<dumped pid>": [...], "*": [...]}; placeholders {dumped_pid}
                         {pid} {ppid} {comm}. Waits for the root's program and exits with
                         its status (SIGTERM/SIGINT kill the tree). See docs/restore.md
  -d, --detach           with --exec: exit 0 once every task exec'd, leaving the tree
                         running (as criu restore -d)
      --handoff-socket P after verification send every pidfd over SCM_RIGHTS to the Unix
                         SEQPACKET socket P (proto/handoff.proto), then tear down or --hold
      --same-pids        every task and zombie at its dumped pid (needs root or
                         CAP_CHECKPOINT_RESTORE; the pids must be free: dump --kill)
      --pidns new        the restored root is the init (pid 1) of a new pid namespace;
                         with --same-pids every task at its innermost dumped pid there
${LOG_HELP}
Exit statuses: 0 restored and verified; 1 restored but different from the image (the
differences are printed); 2 bad command line or output path; 5 a worker exited during
the restore; 6 no usable image directory; 8 damaged or invalid image; 9 the image holds
something that cannot be restored faithfully (named); 10 the restore failed (task, phase
and cause are named); 11 registration or a phase timed out; 12 a system call failed
(e.g. a write to the trace file or to a full stdout); 13 the image needs more than the
limits allow; 14 the trace file is not a v1 trace (trace); 15 stdout or stderr closed by its reader (quietly, the tree is taken down);
27 an --exec program cannot be executed (named, before anything is spawned, or execve
failed); 28 the --handoff-socket is not listening or its host left mid-hand-off;
with --exec and no -d: the root program's exit status (128+N if killed by signal N);
16/20/21 --same-pids: a dumped pid is in use (named, with its holder) / no privilege
to choose pids / other processes took a pid at every retry;
130/143 interrupted by SIGINT/SIGTERM (the tree is taken down; during --hold the signal
ends the hold instead); 23 a hook (action script) stopped the restore. See docs/cli.md.
`;

export function formatPidMap(image: Image, map: PidMap): string {
  const comm = new Map(image.tasks.map((t) => [t.pid, t.comm]));
  const lines = map.pids.map(
    (p) =>
      `  ${String(p.dumped).padStart(7)} -> ${String(p.restored).padEnd(7)} ${printable(comm.get(p.dumped) ?? '')}`,
  );
  return `pid map (dumped -> restored):\n${lines.join('\n')}\n`;
}

export function formatVerification(image: Image, differences: readonly Difference[]): string {
  const fds = image.tasks.reduce((n, t) => n + t.fds.length, 0);
  if (differences.length === 0) {
    return `verification: OK, ${count(fds, 'pidfd')} in ${count(image.tasks.length, 'task')} match the image\n`;
  }
  const list = differences.map((d) => `  - ${d.message}`).join('\n');
  return `verification: FAILED, ${count(differences.length, 'difference')}:\n${list}\n`;
}

const MAX_TIMEOUT_S = Math.floor((2 ** 31 - 1) / 1000);

/** A usage error naming the option and the path, with the cause's message. */
function pathError(option: string, path: string, err: unknown): PcrError {
  return new PcrError('PCR_ERR_USAGE', `restore: ${option} ${path}: ${(err as Error).message}`, {
    cause: err,
  });
}

/** An output path must not be empty, nor the image file itself (it would overwrite it). */
function checkOutputPath(option: string, path: string, imageFile: string): void {
  if (path === '') throw new UsageError(`restore: ${option} needs a file name, got ''`);
  // A missing image is not this check's business: readImage says so.
  if (sameFile(path, imageFile)) throw pathError(option, path, new Error('is the image file'));
}

/** Both paths exist and are one file (same device and inode, links followed). */
function sameFile(a: string, b: string): boolean {
  try {
    const [x, y] = [statSync(a), statSync(b)];
    return x.dev === y.dev && x.ino === y.ino;
  } catch {
    return false; // one does not exist (yet)
  }
}

/** Two paths that name one file (or would, once created). */
const samePath = (a: string, b: string): boolean => resolve(a) === resolve(b) || sameFile(a, b);

/**
 * Fails before restoring when the pid map could not be written: it is written as a
 * temporary file in its directory and renamed (pid-map-file.ts), so the check creates
 * and removes such a file there. access(W_OK) is not enough: root passes it on /proc.
 */
function checkPidMapPath(path: string, option = '--pid-map'): void {
  const probe = join(dirname(path), `.${basename(path)}.${process.pid}.probe`);
  try {
    if (existsSync(path) && statSync(path).isDirectory())
      throw new PcrError('PCR_ERR_USAGE', 'is a directory');
    closeSync(openSync(probe, 'wx', 0o600));
  } catch (err) {
    throw pathError(option, path, err);
  }
  rmSync(probe, { force: true });
}

const SIGNAL_NUMBERS: Record<'SIGINT' | 'SIGTERM', number> = { SIGINT: 2, SIGTERM: 15 };

export interface SignalStop {
  /** The first SIGINT or SIGTERM received, if any. */
  readonly received: 'SIGINT' | 'SIGTERM' | undefined;
  /** Removes the handlers (a later signal has its default effect again). */
  unhook(): void;
}

/**
 * SIGINT/SIGTERM abort the restore (or end --hold) instead of killing us outright: the
 * controller is aborted with reason `interrupted by SIG…`; a second one removes the run
 * directory and exits at once with 128 + the signal number (the workers then die by
 * PR_SET_PDEATHSIG). Only this process decides: the workers are not in our process group
 * (the root worker leads its own session), so a terminal's Ctrl-C, which signals the
 * whole foreground group, reaches only us.
 */
export function stopOnSignals(
  controller: AbortController,
  removeAtExit: () => void = () => {},
): SignalStop {
  let received: SignalStop['received'];
  const stop = (sig: 'SIGINT' | 'SIGTERM') => {
    if (controller.signal.aborted) {
      process.stderr.write(`pidfd-cr: ${sig} again, exiting at once\n`);
      removeLiveRundirs();
      removeAtExit();
      process.exit(128 + SIGNAL_NUMBERS[sig]);
    }
    received ??= sig;
    controller.abort(`interrupted by ${sig}`);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  return {
    get received() {
      return received;
    },
    unhook: () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
    },
  };
}

/**
 * A command stopped by SIGINT/SIGTERM (the restored tree is gone by now; the caller's
 * `finally` removes the rest before it returns): one line that says so, and the shell's
 * convention for death by that signal, 128 + its number (130 for SIGINT, 143 for
 * SIGTERM), as for a second signal.
 */
export function interruptedStatus(sig: 'SIGINT' | 'SIGTERM', err: unknown): number {
  let text =
    err instanceof PcrError
      ? err.message
      : `internal error: ${(err as Error)?.stack ?? String(err)}`;
  if (!text.includes(`interrupted by ${sig}`)) text = `interrupted by ${sig}: ${text}`;
  process.stderr.write(`pidfd-cr: ${text}\n`);
  return 128 + SIGNAL_NUMBERS[sig];
}

export async function run(argv: string[]): Promise<number> {
  const values = parseCommandArgs('restore', argv, {
    dir: { type: 'string', short: 'D' },
    trace: { type: 'boolean' },
    'trace-file': { type: 'string' },
    'pid-map': { type: 'string' },
    hold: { type: 'boolean' },
    timeout: { type: 'string' },
    'external-dead': { type: 'boolean' },
    'max-processes': { type: 'string' },
    pidfile: { type: 'string' },
    viz: { type: 'string' },
    ...LOG_OPTIONS,
    'action-script': { type: 'string', multiple: true },
    'status-fd': { type: 'string' },
    exec: { type: 'string' },
    detach: { type: 'boolean', short: 'd' },
    'handoff-socket': { type: 'string' },
    'same-pids': { type: 'boolean' },
    pidns: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const dir = values.dir;
  if (typeof dir !== 'string' || dir === '') throw new UsageError('restore: -D DIR is required');
  const timeoutS = intOption('restore', 'timeout', values.timeout as string | undefined);
  if (timeoutS === 0) throw new UsageError('restore: --timeout must be at least 1 second');
  // setTimeout takes at most 2^31-1 ms; a longer delay fires at once.
  if (timeoutS !== undefined && timeoutS > MAX_TIMEOUT_S)
    throw new UsageError(`restore: --timeout must be at most ${MAX_TIMEOUT_S} seconds`);
  const maxProcesses = intOption(
    'restore',
    'max-processes',
    values['max-processes'] as string | undefined,
  );
  if (maxProcesses === 0) throw new UsageError('restore: --max-processes must be at least 1');
  const pidMapPath = typeof values['pid-map'] === 'string' ? values['pid-map'] : undefined;
  const traceFilePath = typeof values['trace-file'] === 'string' ? values['trace-file'] : undefined;
  const imageFile = imagePath(dir);
  if (pidMapPath !== undefined) checkOutputPath('--pid-map', pidMapPath, imageFile);
  if (traceFilePath !== undefined) checkOutputPath('--trace-file', traceFilePath, imageFile);
  if (typeof values.viz === 'string') checkOutputPath('--viz', values.viz, imageFile);
  if (
    pidMapPath !== undefined &&
    traceFilePath !== undefined &&
    samePath(pidMapPath, traceFilePath)
  )
    throw new UsageError(`restore: --pid-map and --trace-file name the same file: ${pidMapPath}`);
  const pidfile = typeof values.pidfile === 'string' ? values.pidfile : undefined;
  if (pidfile !== undefined) {
    checkOutputPath('--pidfile', pidfile, imageFile);
    for (const [option, other] of [
      ['--pid-map', pidMapPath],
      ['--trace-file', traceFilePath],
    ] as const)
      if (other !== undefined && samePath(pidfile, other))
        throw new UsageError(`restore: --pidfile and ${option} name the same file: ${pidfile}`);
  }
  const log = await cliLogger('restore', values);
  const exec = typeof values.exec === 'string' ? parseExecOption(values.exec) : undefined;
  const detach = values.detach === true;
  if (detach && exec === undefined) throw new UsageError('restore: -d/--detach needs --exec');
  if (exec !== undefined && values.hold === true)
    throw new UsageError('restore: --exec and --hold exclude each other');
  const handoffSocket = values['handoff-socket'];
  if (handoffSocket === '') throw new UsageError('restore: --handoff-socket needs a path');
  const image = readImage(dir);
  const hold = values.hold === true;
  const scripts = checkActionScripts((values['action-script'] as string[] | undefined) ?? []);
  const statusFd =
    typeof values['status-fd'] === 'string'
      ? checkStatusFd(values['status-fd'], hold ? 'hold' : detach ? 'detach' : undefined)
      : undefined;
  // With -d the byte comes once every task exec'd (below), as criu restore -d's.
  const hooks = cliHooks({ scripts, imageDir: dir, statusFd: detach ? undefined : statusFd });
  if (pidMapPath !== undefined) checkPidMapPath(pidMapPath);
  if (pidfile !== undefined) checkPidMapPath(pidfile, '--pidfile');
  const { trace, stderrTrace, traceFile, viz } = traceOutputs('restore', values);
  const controller = new AbortController();
  const signals = stopOnSignals(controller);
  const outputGuard = abortOnOutputFailure(controller);
  const t0 = performance.now();
  let status: number;
  try {
    const result = await restoreImage(image, {
      hold,
      ...(timeoutS === undefined ? {} : { timeoutMs: timeoutS * 1000 }),
      ...(trace ? { trace } : {}),
      ...(pidMapPath !== undefined ? { pidMapPath } : {}),
      externalDead: values['external-dead'] === true,
      samePids: values['same-pids'] === true,
      ...(values.pidns === undefined ? {} : { pidns: pidnsOption(values.pidns) }),
      ...(maxProcesses === undefined ? {} : { limits: { maxProcesses } }),
      signal: controller.signal,
      // Orphans of the restored tree (if a worker dies) come back to us, not to init.
      adoptOrphans: true,
      ...(log.logger ? { logger: log.logger } : {}),
      ...(hooks ? { hooks } : {}),
      ...(exec === undefined ? {} : { exec, detach }),
      ...(typeof handoffSocket === 'string' ? { handoffSocket } : {}),
      onVerified: ({ pidMap, differences }) => {
        const ms = (performance.now() - t0).toFixed(0);
        process.stdout.write(
          `restored ${count(pidMap.pids.length, 'task')} from ${dir} in ${ms} ms\n`,
        );
        process.stdout.write(formatPidMap(image, pidMap));
        process.stdout.write(formatVerification(image, differences));
        if (pidfile !== undefined && differences.length === 0)
          writePidFile(pidfile, restoredRoot(pidMap, image.rootPid));
        if (hold)
          process.stdout.write(
            `holding the restored tree (pid ${process.pid}): SIGTERM or SIGINT takes it down\n`,
          );
      },
    }).finally(() => stderrTrace?.flush()); // the trace before any error line
    status = result.ok ? 0 : EXIT_CODES.PCR_ERR_VERIFY;
    if (result.ok && typeof handoffSocket === 'string')
      process.stdout.write(
        `handed the pidfds of ${count(result.plan.tasks.length, 'task')} off to ${handoffSocket}\n`,
      );
    if (result.detached)
      process.stdout.write(
        `detached: every task runs its --exec program (root pid ${restoredRoot(result.pidMap, image.rootPid)})\n`,
      );
    else if (result.rootStatus !== undefined) status = shellStatus(result.rootStatus);
    if (detach && statusFd !== undefined) signalReady(statusFd, result.detached === true);
  } catch (err) {
    // A signal that ended a held tree is not an interruption: restoreImage returned.
    if (signals.received && err !== traceFile?.error)
      return interruptedStatus(signals.received, err);
    throw err;
  } finally {
    signals.unhook();
    outputGuard();
    traceFile?.close();
    await viz?.write();
    log.close();
  }
  // A trace write that failed late (teardown, after verification) fails the command too.
  if (traceFile?.error) throw traceFile.error;
  return status;
}

/** --exec: JSON (a list or a map of lists), or @FILE holding it. */
function parseExecOption(text: string): string[] | Record<string, string[]> {
  let json = text;
  if (text.startsWith('@')) {
    try {
      json = readFileSync(text.slice(1), 'utf8');
    } catch (err) {
      throw pathError('--exec', text.slice(1), err);
    }
  }
  try {
    return JSON.parse(json) as string[] | Record<string, string[]>;
  } catch (err) {
    throw new UsageError(`restore: --exec ${text}: not JSON: ${(err as Error).message}`);
  }
}

function pidnsOption(value: unknown): 'new' {
  if (value !== 'new')
    throw new UsageError(`restore: --pidns must be 'new', got '${String(value)}'`);
  return value;
}
