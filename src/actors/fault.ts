/**
 * Fault injection, a TEST HOOK read only by workers (docs/restore.md): PCR_FAULT is
 * `<kind>@<dumped pid>:<phase>`, e.g. `crash@4242:open-alive`. Kinds: `crash` (the worker
 * kills itself with SIGKILL), `hang` (the phase never finishes, the event loop stays
 * free), `spin` (a busy loop: nothing else runs), `fail` (the phase's actor throws),
 * `leak` (the phase's actor keeps one pidfd the image does not have: a difference for
 * verification to find). The phase is one of spawn, open-alive, dead, kill-temp,
 * finalize, verify. Two kinds act during the worker's start-up, before its HELLO, and
 * only with phase spawn: `bind-taken` (its fd socket path is bound once more just before
 * it binds it: start-up fails with a real EADDRINUSE) and `sigstop` (it stops itself
 * with SIGSTOP before it connects to the control link and proves itself on the auth
 * socket: a test can take its routing id while it is stopped).
 */
import { PcrError } from '../errors.js';
import { pidfdOpen, listenSeqpacket } from '../../native/index.js';
import { fdSocketPath } from '../protocol/paths.js';
import type { Phase } from '../plan/types.js';

export type FaultKind = 'crash' | 'hang' | 'spin' | 'fail' | 'leak' | 'bind-taken' | 'sigstop';

/** Start-up faults: acted out by injectStartupFault, only with phase spawn. */
const STARTUP_KINDS: readonly FaultKind[] = ['bind-taken', 'sigstop'];

export interface Fault {
  kind: FaultKind;
  pid: number;
  phase: Phase;
}

const PATTERN =
  /^(crash|hang|spin|fail|leak|bind-taken|sigstop)@(\d+):(spawn|open-alive|dead|kill-temp|finalize|verify)$/;

export function parseFault(text: string | undefined): Fault | undefined {
  if (!text) return undefined;
  const m = PATTERN.exec(text);
  if (!m) throw new PcrError('PCR_ERR_USAGE', `PCR_FAULT '${text}' is not <kind>@<pid>:<phase>`);
  const fault = { kind: m[1] as FaultKind, pid: Number(m[2]), phase: m[3] as Phase };
  if (STARTUP_KINDS.includes(fault.kind) && fault.phase !== 'spawn')
    throw new PcrError(
      'PCR_ERR_USAGE',
      `PCR_FAULT '${text}': ${fault.kind} acts only in phase spawn`,
    );
  return fault;
}

/** The points of a worker's start-up where a start-up fault acts (run.ts). */
export type StartupStep = 'bind' | 'connect';

/** Acts out a start-up fault for this task at `step` of its start-up. */
export function injectStartupFault(
  fault: Fault | undefined,
  pid: number,
  rundir: string,
  step: StartupStep,
): void {
  if (!fault || fault.pid !== pid || fault.phase !== 'spawn') return;
  // The socket is never closed: the worker's own bind must find the path taken.
  if (fault.kind === 'bind-taken' && step === 'bind') listenSeqpacket(fdSocketPath(rundir, pid));
  if (fault.kind === 'sigstop' && step === 'connect') process.kill(process.pid, 'SIGSTOP');
}

/** Acts out `fault` if it is for this task and phase; resolves otherwise. */
export async function injectFault(
  fault: Fault | undefined,
  pid: number,
  phase: Phase,
): Promise<void> {
  if (!fault || fault.pid !== pid || fault.phase !== phase) return;
  // What the task sent on entering this step (its STEP: where it is) goes out first, as it
  // would in a real failure later in the step; a crash or a busy loop at once would stop
  // the queued send (zmtp-dealer.ts writes queued sends from a microtask).
  await new Promise((resolve) => setTimeout(resolve, 20));
  switch (fault.kind) {
    case 'bind-taken':
    case 'sigstop':
      return; // start-up faults: injectStartupFault
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
