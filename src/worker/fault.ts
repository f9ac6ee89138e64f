/**
 * Fault injection, a TEST HOOK read only by workers (docs/restore.md): PCR_FAULT is
 * `<kind>@<dumped pid>:<phase>`, e.g. `crash@4242:open-alive`. Kinds: `crash` (the worker
 * kills itself with SIGKILL), `hang` (the phase never finishes, the event loop stays
 * free), `spin` (a busy loop: nothing else runs), `fail` (the phase's actor throws),
 * `leak` (the phase's actor keeps one pidfd the image does not have: a difference for
 * verification to find). The phase is one of spawn, open-alive, dead, kill-temp,
 * finalize, verify.
 */
import { PcrError } from '../errors.js';
import { pidfdOpen } from '../../native/index.js';
import type { Phase } from '../plan/types.js';

export type FaultKind = 'crash' | 'hang' | 'spin' | 'fail' | 'leak';

export interface Fault {
  kind: FaultKind;
  pid: number;
  phase: Phase;
}

const PATTERN =
  /^(crash|hang|spin|fail|leak)@(\d+):(spawn|open-alive|dead|kill-temp|finalize|verify)$/;

export function parseFault(text: string | undefined): Fault | undefined {
  if (!text) return undefined;
  const m = PATTERN.exec(text);
  if (!m) throw new PcrError('PCR_ERR_USAGE', `PCR_FAULT '${text}' is not <kind>@<pid>:<phase>`);
  return { kind: m[1] as FaultKind, pid: Number(m[2]), phase: m[3] as Phase };
}

/** Acts out `fault` if it is for this task and phase; resolves otherwise. */
export async function injectFault(
  fault: Fault | undefined,
  pid: number,
  phase: Phase,
): Promise<void> {
  if (!fault || fault.pid !== pid || fault.phase !== phase) return;
  switch (fault.kind) {
    case 'crash':
      process.kill(process.pid, 'SIGKILL');
      return new Promise(() => {});
    case 'hang':
      return new Promise(() => {});
    case 'spin':
      for (;;) {
        // a worker stuck in a loop: only SIGKILL ends it
      }
    case 'fail':
      throw new PcrError('PCR_ERR_RESTORE', `injected failure (PCR_FAULT) in phase ${phase}`);
    case 'leak':
      // A pidfd to ourselves that is never closed (the fd number is whatever is free).
      pidfdOpen(process.pid);
      return;
  }
}
