/**
 * A worker that fails before it is part of the restore (bad environment, koffi that does
 * not load, a socket it cannot bind, a control link that breaks before ASSIGN) ends with
 * a typed failure, not a stack: it reports the failure over the auth socket
 * (startup-report.ts), and only if that is impossible prints one line
 * `pidfd-cr worker <dumped pid>: <message>`; either way it exits with
 * WORKER_STARTUP_FAILED_EXIT. Imported first by main.ts, and importing nothing that can
 * fail itself, so that it catches a failure of every later module; run.ts takes over
 * with its own handler once the coordinator has accepted the worker (ASSIGN). Importing
 * it installs the handler: only the worker does.
 */
import { writeSync } from 'node:fs';
import { failureFromError } from '../../machines/failure.js';
import { WORKER_ENV } from '../../protocol/identity.js';
import { WORKER_STARTUP_FAILED_EXIT, looseIdentity } from './failure.js';

let failing = false;

export async function failStartup(err: unknown): Promise<never> {
  if (!failing) {
    failing = true;
    const id = looseIdentity(process.env[WORKER_ENV]);
    const failure = failureFromError(err, 'spawn');
    let reported = false;
    try {
      const { reportStartupFailure } = await import('./report.js');
      reported = await reportStartupFailure(id, failure);
    } catch {
      // native code or the run directory unusable: the one line below is all we can do
    }
    if (!reported && id.stderrUsable) {
      writeSync(2, `pidfd-cr worker ${id.dumpedPid ?? '?'}: ${failure.message}\n`);
    }
    process.exit(WORKER_STARTUP_FAILED_EXIT);
  }
  return new Promise<never>(() => {});
}

const onUncaught = (err: Error): void => void failStartup(err);
process.on('uncaughtException', onUncaught);

/** The worker is accepted: from now on run.ts reports failures over the control link. */
export function startupDone(): void {
  process.off('uncaughtException', onUncaught);
}
