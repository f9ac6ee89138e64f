/**
 * The CLI's side of restoreImage's hooks, as criu's: `--action-script PATH` (repeatable)
 * runs each script at each hook with CRTOOLS_SCRIPT_ACTION and the pidfd-cr variables;
 * one that exits non-zero stops the restore naming it. `--status-fd N` gets one byte once
 * the held tree is ready (--hold) or every task exec'd its program (--exec -d), then is
 * closed. Both are checked before anything starts.
 */
import { closeSync, fstatSync, writeFileSync, writeSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import { join, resolve } from 'node:path';
import { getStatusFlags, setCloexec } from '../../native/index.js';
import { notExecutable } from '../sys/executable.js';
import { PcrError, UsageError } from '../errors.js';
import { pidMapJson } from '../restore/pid-map-file.js';
import type { HookContext, RestoreHooks } from '../coordinator/settings.js';
import { HOOK_NAMES, type HookName } from '../machines/coordinator.js';
import { describeWaitStatus } from '../plan/status.js';

/** CRTOOLS_SCRIPT_ACTION at each hook (criu's names where criu has the moment). */
export const SCRIPT_ACTIONS: Record<HookName, string> = {
  treeBuilt: 'post-setup-namespaces',
  verified: 'post-restore',
  beforeHandoff: 'pre-resume',
  beforeTeardown: 'pre-teardown',
};

/** Absolute paths of the scripts; a missing or non-executable one is a usage error. */
export function checkActionScripts(paths: readonly string[]): string[] {
  return paths.map((p) => {
    if (p === '') throw new UsageError("restore: --action-script needs a file name, got ''");
    const abs = resolve(p);
    const why = notExecutable(abs);
    if (why !== undefined) throw new UsageError(`restore: --action-script ${p} ${why}`);
    return abs;
  });
}

/** O_ACCMODE and O_RDONLY. */
const O_ACCMODE = 3;
const O_RDONLY = 0;

/**
 * `--status-fd N`: an open, writable fd above stderr, made close-on-exec (no child keeps
 * it). `readyAt`: when the byte comes (--hold or --exec -d); without either, a usage error.
 */
export function checkStatusFd(value: string, readyAt: 'hold' | 'detach' | undefined): number {
  if (!/^[0-9]+$/.test(value) || !Number.isSafeInteger(Number(value)))
    throw new UsageError(`restore: --status-fd must be an fd number, got '${value}'`);
  const fd = Number(value);
  if (fd <= 2)
    throw new UsageError(`restore: --status-fd ${fd} is stdin, stdout or stderr; give another fd`);
  if (readyAt === undefined)
    throw new UsageError(
      'restore: --status-fd needs --hold or --exec with -d (the byte says the held or detached tree is ready)',
    );
  try {
    fstatSync(fd);
  } catch (err) {
    throw new UsageError(`restore: --status-fd ${fd}: ${(err as Error).message}`);
  }
  if ((getStatusFlags(fd) & O_ACCMODE) === O_RDONLY)
    throw new UsageError(`restore: --status-fd ${fd}: not open for writing`);
  setCloexec(fd, true);
  return fd;
}

/** Writes the one status byte (criu writes '\0') if `ready`, and closes the fd. */
export function signalReady(fd: number, ready: boolean): void {
  try {
    if (ready) writeSync(fd, Buffer.of(0));
  } catch (err) {
    throw new PcrError('PCR_ERR_SYSCALL', `--status-fd ${fd}: ${(err as Error).message}`, {
      cause: err,
    });
  } finally {
    try {
      closeSync(fd);
    } catch {
      // already closed: nothing more to do
    }
  }
}

/** The pid map as `{"<dumped pid>": restored pid}` (what --pid-map writes), for scripts. */
function writePidMapForScripts(c: HookContext): string {
  const path = join(c.runDir, `pid-map-${c.hook}.json`);
  writeFileSync(path, `${JSON.stringify(pidMapJson(c.pidMap))}\n`, { mode: 0o600 });
  return path;
}

/** Runs one script to its end; its signal aborts it with SIGKILL (awaited: nothing left). */
function runScript(path: string, env: NodeJS.ProcessEnv, signal: AbortSignal): Promise<void> {
  return new Promise((done, fail) => {
    const child = spawn(path, [], { stdio: ['ignore', 2, 2], env });
    const kill = (): boolean => child.kill('SIGKILL');
    signal.addEventListener('abort', kill, { once: true });
    const action = env.CRTOOLS_SCRIPT_ACTION;
    child.on('error', (err) => {
      signal.removeEventListener('abort', kill);
      fail(
        new PcrError('PCR_ERR_HOOK_ABORTED', `action script ${path} (${action}): ${err.message}`),
      );
    });
    child.on('exit', (code, sig) => {
      signal.removeEventListener('abort', kill);
      if (code === 0) return done();
      const how =
        code !== null ? `exited with status ${code}` : describeWaitStatus(signalNumber(sig));
      fail(new PcrError('PCR_ERR_HOOK_ABORTED', `action script ${path} (${action}) ${how}`));
    });
  });
}

/** The wait-status word of death by `sig` (the signal number), for describeWaitStatus. */
const signalNumber = (sig: NodeJS.Signals | null): number =>
  sig === null ? 0 : ((osConstants.signals as Record<string, number>)[sig] ?? 0);

export interface CliHookOptions {
  scripts: readonly string[];
  imageDir: string;
  /** The --status-fd written at beforeHandoff (--hold); with -d the caller writes it. */
  statusFd: number | undefined;
}

/** restoreImage hooks for the CLI's --action-script and --status-fd (undefined: none). */
export function cliHooks(o: CliHookOptions): RestoreHooks | undefined {
  if (o.scripts.length === 0 && o.statusFd === undefined) return undefined;
  const imageDir = resolve(o.imageDir);
  const hooks: RestoreHooks = {};
  for (const name of HOOK_NAMES) {
    hooks[name] = async (c) => {
      if (o.scripts.length > 0) {
        const pidMapPath = writePidMapForScripts(c);
        const env = {
          ...process.env,
          CRTOOLS_SCRIPT_ACTION: SCRIPT_ACTIONS[name],
          CRTOOLS_IMAGE_DIR: imageDir,
          CRTOOLS_INIT_PID: String(c.rootPid),
          PIDFD_CR_HOOK: name,
          PIDFD_CR_IMAGE_DIR: imageDir,
          PIDFD_CR_ROOT_PID: String(c.rootPid),
          PIDFD_CR_PID_MAP: pidMapPath,
          PIDFD_CR_DIFFERENCES: String(c.differences?.length ?? ''),
        };
        for (const script of o.scripts) await runScript(script, env, c.signal);
      }
      // The byte only for a tree that is the image; EOF alone otherwise (criu: no byte).
      if (name === 'beforeHandoff' && o.statusFd !== undefined)
        signalReady(o.statusFd, c.differences?.length === 0);
    };
  }
  return hooks;
}
