/**
 * restoreImage: the library entry of a restore (embeddable: no process.exit, no argv).
 * It plans, makes a private run directory, binds the ZeroMQ ROUTER, runs the coordinator
 * machine with the real effects (spawning the root worker, watching every worker through
 * a pidfd, tearing the tree down), and removes everything it made, on success and on
 * every failure. See docs/restore.md.
 */
import { PcrError } from '../errors.js';
import type { Image } from '../model/image.js';
import { planRestore } from '../plan/planner.js';
import type { RestorePlan } from '../plan/types.js';
import { checkPlanLimits, type RestoreLimits } from '../plan/limits.js';
import { checkImage } from '../image/codec.js';
import { textOf } from '../text.js';
import { checkRestoreOptions } from './options.js';
import type { PidMap } from '../protocol/messages.js';
import type { Difference } from '../verify/compare.js';
import type { AbortReason } from '../machines/coordinator.js';
import { bootId, hasDacOverride } from '../sys/open-files.js';
import { makeRundir, removeRundir } from '../coordinator/rundir.js';
export { removeLiveRundirs } from '../coordinator/rundir.js';
import type { TraceSink } from '../protocol/trace.js';
import { Session } from '../coordinator/session.js';
import { writeSpawnPlan } from '../launch/spawn-plan.js';

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
}

export interface RestoreResult {
  /** Restored and verified without a difference. */
  ok: boolean;
  pidMap: PidMap;
  differences: Difference[];
  plan: RestorePlan;
}

export async function restoreImage(
  image: Image,
  options: RestoreOptions = {},
): Promise<RestoreResult> {
  checkImage(image);
  const limits = checkRestoreOptions(options);
  if (options.signal?.aborted) {
    throw new PcrError(
      'PCR_ERR_RESTORE',
      `restore not started: its signal was already aborted (${textOf(options.signal.reason)})`,
    );
  }
  const plan = planRestore(image, {
    externalDead: options.externalDead ?? false,
    currentBootId: bootId(),
    unprivileged: !hasDacOverride(),
  });
  checkPlanLimits(plan, limits);
  const rundir = makeRundir(options.runDirParent);
  let session: Session | undefined;
  try {
    writeSpawnPlan(rundir, plan);
    session = await Session.open(image, plan, rundir, options);
    const output = await session.run();
    // A callback of ours (trace sink, onVerified) that failed first stopped the restore.
    if (session.callerError) throw session.callerError;
    if (output.failure) throw abortError(output.failure);
    if (session.pidMapError) throw session.pidMapError;
    return { ok: output.ok, pidMap: output.pidMap, differences: output.differences, plan };
  } finally {
    await session?.close();
    removeRundir(rundir);
  }
}

function abortError(f: AbortReason): PcrError {
  return new PcrError(f.code, `restore aborted in phase ${f.phase}: ${f.message}`);
}
