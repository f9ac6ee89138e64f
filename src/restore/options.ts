/**
 * restoreImage's options: what a caller may give, checked before anything starts, and
 * resolved ONCE into the settings the runtime takes (defaults applied here and nowhere
 * else). An embedding tool's mistake is a PCR_ERR_USAGE naming the option, not a timer
 * that fires at once (setTimeout turns NaN, negative or > 2^31-1 ms into 1 ms) or a
 * safety limit that silently compares false.
 */
import { PcrError } from '../errors.js';
import { DEFAULT_LIMITS, type RestoreLimits } from '../plan/limits.js';
import { describe } from '../text.js';
import { COORDINATOR_GRACE_MS, type PidMap } from '../protocol/messages.js';
import type { TraceSink } from '../protocol/trace.js';
import type { Difference } from '../verify/compare.js';
import { silentLogger, type Logger } from '../log.js';
import type { RestoreHooks, SessionSettings } from '../coordinator/settings.js';
import { HOOK_NAMES, type HookName } from '../machines/coordinator.js';
import type { ExecSpec } from '../coordinator/exec-spec.js';

export interface RestoreOptions {
  /** Keep the restored tree until `signal` aborts, instead of tearing it down at once. */
  hold?: boolean;
  /** Longest wait for registration and for each phase (default 30 s). */
  timeoutMs?: number;
  /**
   * Receives every state change of every machine. If it throws, the restore stops and
   * restoreImage rejects with what it threw (a PcrError as it is).
   */
  trace?: TraceSink;
  /** With `trace`: also the workers' state changes (default true; costs messages). */
  traceWorkers?: boolean;
  /** Write the pid map here (JSON, atomically) once verified. */
  pidMapPath?: string;
  /** Plan external targets as dead (SIGKILLed temp) instead of reopening them. */
  externalDead?: boolean;
  /** Stops a restore in progress, or ends a held tree. */
  signal?: AbortSignal;
  /** Called once verification ran (before holding), with the pid map and differences. */
  onVerified?: (result: { pidMap: PidMap; differences: Difference[] }) => void;
  /**
   * Awaited at the points a host needs (treeBuilt, verified, beforeHandoff,
   * beforeTeardown; docs/embedding.md); each may stop the restore by throwing or
   * returning `{ abort: reason }` (PCR_ERR_HOOK_ABORTED). Bounded by `timeoutMs`.
   */
  hooks?: RestoreHooks;
  /** Our fd that workers get as stderr (default 2; null: /dev/null). */
  workerStderr?: number | null;
  /** Parent of the private run directory (default os.tmpdir()). */
  runDirParent?: string;
  /** TEST HOOK: PCR_FAULT for the workers (docs/restore.md). */
  fault?: string;
  /** How long teardown waits for workers to leave before SIGKILL (default 3 s). */
  teardownGraceMs?: number;
  /** What the restore may make (default DEFAULT_LIMITS); checked before anything starts. */
  limits?: Partial<RestoreLimits>;
  /**
   * Make this process a child subreaper (PR_SET_CHILD_SUBREAPER, process-wide, left set)
   * before anything is spawned, so that processes of the restored tree orphaned by a
   * dying worker come back to us and are reaped with the rest, not left to init (default
   * false). The CLI sets it; a host that reaps its own children may too.
   */
  adoptOrphans?: boolean;
  /**
   * Told what the restore does at each step: plan, spawn, each phase's start and end,
   * verify, hold, teardown (a pino Logger fits; default: says nothing). Not the trace.
   */
  logger?: Logger;
  /**
   * After verification each task execs the host's program keeping exactly its pidfds
   * (at their numbers, with their flags) and fds 0–2: one argv for every task, or argv by
   * dumped pid ("*" for the rest); placeholders {dumped_pid} {pid} {ppid} {comm}
   * (docs/restore.md "Hand-off"). Close-on-exec pidfds are kept and named in
   * PIDFD_CR_CLOEXEC_FDS (restoreCloexecFromEnv puts the bits back).
   */
  exec?: ExecSpec;
  /** With exec: resolve once every task exec'd, leaving the tree running (criu -d). */
  detach?: boolean;
  /**
   * After verification each task sends its pidfds over SCM_RIGHTS to the Unix SEQPACKET
   * socket the host listens on here, with descriptors (proto/handoff.proto).
   */
  handoffSocket?: string;
  /**
   * Restore every task and zombie at its dumped pid (docs/restore.md "Same pids"). Needs
   * CAP_CHECKPOINT_RESTORE or root; every dumped pid must be free (checked before anything
   * starts). Default false: new pids and a pid map.
   */
  samePids?: boolean;
  /**
   * 'new': the restored root is the init (pid 1) of a fresh pid namespace (and mount
   * namespace, with its own /proc); with `samePids` every task gets its innermost dumped
   * pid there (docs/restore.md "Pid namespaces"). Needs root. Default: ours.
   */
  pidns?: 'new';
}

/** Every option resolved: what restoreImage runs with. */
export interface ResolvedRestoreOptions {
  session: SessionSettings;
  limits: RestoreLimits;
  externalDead: boolean;
  runDirParent: string | undefined;
  pidMapPath: string | undefined;
  adoptOrphans: boolean;
  samePids: boolean;
  pidnsNew: boolean;
}

const DEFAULT_TIMEOUT_MS = 30_000;

/** Checks every option and applies every default. */
export function resolveRestoreOptions(o: RestoreOptions): ResolvedRestoreOptions {
  const limits = checkRestoreOptions(o);
  return {
    session: {
      hold: o.hold ?? false,
      phaseTimeoutMs: o.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      trace: o.trace,
      traceWorkers: o.trace !== undefined && o.traceWorkers !== false,
      signal: o.signal,
      onVerified: o.onVerified,
      hooks: { ...o.hooks },
      workerStderr: o.workerStderr === undefined ? 2 : o.workerStderr,
      fault: o.fault,
      // Never shorter than a worker's grace for its children (see COORDINATOR_GRACE_MS).
      teardownGraceMs: Math.max(o.teardownGraceMs ?? 0, COORDINATOR_GRACE_MS),
      logger: o.logger ?? silentLogger,
      handoff:
        o.exec === undefined && o.handoffSocket === undefined
          ? undefined
          : { socketPath: o.handoffSocket, exec: o.exec, detach: o.detach ?? false },
    },
    limits,
    externalDead: o.externalDead ?? false,
    runDirParent: o.runDirParent,
    pidMapPath: o.pidMapPath,
    adoptOrphans: o.adoptOrphans ?? false,
    samePids: o.samePids ?? false,
    pidnsNew: o.pidns === 'new',
  };
}

/** The longest delay setTimeout takes. */
const MAX_DELAY_MS = 2 ** 31 - 1;

const usage = (option: string, value: unknown, want: string): PcrError =>
  new PcrError('PCR_ERR_USAGE', `restore option ${option}: ${describe(value)} is not ${want}`);

function checkInt(option: string, value: unknown, min: number, max: number): void {
  if (value === undefined) return;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max)
    throw usage(option, value, `an integer from ${min} to ${max}`);
}

/** Checks every option; returns the limits in force (limitsOf). */
export function checkRestoreOptions(o: RestoreOptions): RestoreLimits {
  checkInt('timeoutMs', o.timeoutMs, 1, MAX_DELAY_MS);
  checkInt('teardownGraceMs', o.teardownGraceMs, 0, MAX_DELAY_MS);
  if (o.workerStderr !== null) checkInt('workerStderr', o.workerStderr, 0, MAX_DELAY_MS);
  if (o.pidns !== undefined && o.pidns !== 'new') throw usage('pidns', o.pidns, "'new'");
  if (o.hold && o.signal === undefined)
    throw new PcrError('PCR_ERR_USAGE', 'restore option hold needs a signal to end the hold');
  if (o.detach && o.exec === undefined)
    throw new PcrError('PCR_ERR_USAGE', 'restore option detach needs exec');
  if (o.hold && o.exec !== undefined)
    throw new PcrError(
      'PCR_ERR_USAGE',
      'restore options hold and exec exclude each other (exec runs until the root program exits)',
    );
  for (const [option, path] of [
    ['runDirParent', o.runDirParent],
    ['pidMapPath', o.pidMapPath],
    ['handoffSocket', o.handoffSocket],
  ] as const) {
    if (path !== undefined && (typeof path !== 'string' || path === ''))
      throw usage(option, path, 'a path');
  }
  if (o.hooks !== undefined && (typeof o.hooks !== 'object' || o.hooks === null))
    throw usage('hooks', o.hooks, 'an object of hooks');
  for (const [name, hook] of Object.entries(o.hooks ?? {})) {
    if (!HOOK_NAMES.includes(name as HookName))
      throw usage('hooks', name, `a hook name (${HOOK_NAMES.join(', ')})`);
    if (hook !== undefined && typeof hook !== 'function')
      throw usage(`hooks.${name}`, hook, 'a function');
  }
  for (const key of Object.keys(o.limits ?? {}) as Array<keyof RestoreLimits>) {
    if (!(key in DEFAULT_LIMITS)) throw usage('limits', key, 'a known limit');
  }
  return limitsOf(o);
}

/** The limits in force: the defaults, each replaced by a given positive integer. */
export function limitsOf(o: RestoreOptions): RestoreLimits {
  const limits = { ...DEFAULT_LIMITS };
  for (const key of Object.keys(DEFAULT_LIMITS) as Array<keyof RestoreLimits>) {
    const v = o.limits?.[key];
    if (v === undefined) continue;
    checkInt(`limits.${key}`, v, 1, Number.MAX_SAFE_INTEGER);
    limits[key] = v;
  }
  return limits;
}
