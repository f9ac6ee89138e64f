/**
 * What a Session runs with: every option of a restore resolved, defaults applied. Only
 * restore/options.ts makes one (from the caller's RestoreOptions); the runtime takes
 * nothing else.
 */
import type { PidMap } from '../protocol/messages.js';
import type { TraceSink } from '../protocol/trace.js';
import type { Difference } from '../verify/compare.js';

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
  /** restore --same-pids: every worker and zombie at its dumped pid (sys/pid-choose.ts). */
  samePids?: boolean;
  /** restore --pidns new: the root is the init of a new pid namespace (pidns.ts). */
  pidnsNew?: boolean;
}
