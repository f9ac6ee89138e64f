/**
 * What a worker's start-up failure needs to know about itself, pure: the exit status it
 * ends with and what can be read of a PCR_WORKER that may be malformed
 * (startup-guard.ts, docs/protocol.md "Start-up failures").
 */

/** Exit status of a worker whose start-up failed (70 is a later internal error). */
export const WORKER_STARTUP_FAILED_EXIT = 71;

/** What can be read of PCR_WORKER even when it is malformed. */
export interface LooseIdentity {
  dumpedPid?: number;
  rundir?: string;
  stderrUsable: boolean;
}

export function looseIdentity(text: string | undefined): LooseIdentity {
  let id: Record<string, unknown> = {};
  try {
    const parsed: unknown = JSON.parse(text ?? '');
    if (parsed !== null && typeof parsed === 'object') id = parsed as Record<string, unknown>;
  } catch {
    // unreadable: nothing known
  }
  return {
    ...(Number.isInteger(id.dumpedPid) ? { dumpedPid: id.dumpedPid as number } : {}),
    ...(typeof id.rundir === 'string' ? { rundir: id.rundir } : {}),
    // fd 2 is one of the task's placeholders when the spawner says so; else it is ours.
    stderrUsable: id.stderrUsable !== false,
  };
}
