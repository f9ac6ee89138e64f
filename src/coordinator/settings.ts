/**
 * What a Session runs with: every option of a restore resolved, defaults applied. Only
 * restore/options.ts makes one (from the caller's RestoreOptions); the runtime takes
 * nothing else.
 */
import type { PidMap } from '../protocol/messages.js';
import type { TraceSink } from '../protocol/trace.js';
import type { Difference } from '../verify/compare.js';
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
  /** Our fd that workers get as stderr; null: /dev/null. */
  workerStderr: number | null;
  /** Test hook: PCR_FAULT for the workers. */
  fault: string | undefined;
  /** How long teardown waits for workers to leave before SIGKILL. */
  teardownGraceMs: number;
  /** Hand the verified pidfds off; undefined: none. */
  handoff?: HandoffSettings | undefined;
}
