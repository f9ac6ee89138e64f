/**
 * What a Session runs with: every option of a restore resolved, defaults applied. Only
 * restore/options.ts makes one (from the caller's RestoreOptions); the runtime takes
 * nothing else.
 */
import type { PidMap } from '../protocol/messages.js';
import type { TraceSink } from '../protocol/trace.js';
import type { Difference } from '../verify/compare.js';
import type { Logger } from '../log.js';
import type { HookName } from '../machines/coordinator.js';

/** What a hook is told: where the restore is (see HOOK_NAMES for when each runs). */
export interface HookContext {
  hook: HookName;
  /** Dumped pid -> restored pid of every task and thread (complete from treeBuilt on). */
  pidMap: PidMap;
  /** The restored root task's pid (CRTOOLS_INIT_PID for criu's scripts). */
  rootPid: number;
  /** The dumped root task's pid. */
  dumpedRootPid: number;
  /** The restore's private run directory (0700, removed when the restore ends). */
  runDir: string;
  /** From verified on: what verification found; empty when the tree is the image. */
  differences: Difference[] | undefined;
  /** Aborted when the restore stops waiting for this hook (timeout, failure, signal). */
  signal: AbortSignal;
}

/** Resolve (or return nothing) to go on; throw or return `{ abort: reason }` to stop. */
export type Hook = (
  context: HookContext,
) => void | { abort: string } | Promise<void | { abort: string }>;
export type RestoreHooks = Partial<Record<HookName, Hook>>;
import type { ExecSpec } from './exec-spec.js';

/** The hand-off after verification (docs/restore.md "Hand-off"), checked already. */
export interface HandoffSettings {
  /** The host's Unix SEQPACKET socket, or undefined. */
  socketPath: string | undefined;
  /** Each task's program, or undefined. */
  exec: ExecSpec | undefined;
  /** With exec: end once every task exec'd and leave the tree running. */
  detach: boolean;
}

export interface VerifiedResult {
  pidMap: PidMap;
  differences: Difference[];
}

export interface SessionSettings {
  /** Keep the tree until `signal` aborts. */
  hold: boolean;
  /** Longest wait for registration and for each phase. */
  phaseTimeoutMs: number;
  trace: TraceSink | undefined;
  /** Workers send their state changes too (only with a trace). */
  traceWorkers: boolean;
  signal: AbortSignal | undefined;
  /** Called once verification ran (before holding); a throw stops the restore. */
  onVerified: ((result: VerifiedResult) => void) | undefined;
  /** Awaited at the hook points; a missing one goes on at once. */
  hooks: RestoreHooks;
  /** Our fd that workers get as stderr; null: /dev/null. */
  workerStderr: number | null;
  /** Test hook: PCR_FAULT for the workers. */
  fault: string | undefined;
  /** How long teardown waits for workers to leave before SIGKILL. */
  teardownGraceMs: number;
  /** Told what the restore does at each step (silentLogger by default). */
  logger: Logger;
  /** Hand the verified pidfds off; undefined: none. */
  handoff?: HandoffSettings | undefined;
  /** restore --same-pids: every worker and zombie at its dumped pid (sys/pid-choose.ts). */
  samePids?: boolean;
  /** restore --pidns new: the root is the init of a new pid namespace (pidns.ts). */
  pidnsNew?: boolean;
}
