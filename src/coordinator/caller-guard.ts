/**
 * The caller's callbacks (trace sink, onVerified) run inside machine inspection, actions
 * and the ZeroMQ receive loop: an exception there must not escape into them. The first
 * one that throws before anything else failed becomes `callerError` (restoreImage throws
 * it: a PcrError as it is, e.g. the SyscallError of a trace file that cannot be written;
 * anything else wrapped) and stops the restore; one that throws after another failure is
 * only silenced: that failure is the one reported.
 */
import { PcrError } from '../errors.js';
import type { TraceSink } from '../protocol/trace.js';
import { textOf } from '../text.js';

export class CallerGuard {
  callerError: PcrError | undefined;
  private sinkBroken = false;

  /**
   * @param failedAlready the restore has a failure of its own
   * @param stop          stops the restore (called on the next tick, not from inside the callback)
   */
  constructor(
    private readonly failedAlready: () => boolean,
    private readonly stop: (reason: string) => void,
  ) {}

  /** The sink, dropped and the restore stopped the first time it throws. */
  guardSink(sink: TraceSink): TraceSink {
    return (e) => {
      if (this.sinkBroken) return;
      try {
        sink(e);
      } catch (err) {
        this.sinkBroken = true;
        this.failed('trace sink', err);
      }
    };
  }

  /** Runs a callback of the caller; a throw stops the restore. */
  call(what: string, callback: () => void): void {
    try {
      callback();
    } catch (err) {
      this.failed(what, err);
    }
  }

  private failed(what: string, err: unknown): void {
    if (this.failedAlready() || this.callerError) return;
    const error =
      err instanceof PcrError
        ? err
        : new PcrError('PCR_ERR_RESTORE', `${what} failed: ${textOf(err)}`, { cause: err });
    this.callerError = error;
    setImmediate(() => this.stop(error.message));
  }
}
