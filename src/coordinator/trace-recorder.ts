/**
 * The trace of one run as the coordinator emits it (docs/trace.md): every event gets the
 * run id and its sequence number; state changes keep their v1 fields, and the events
 * only the coordinator can see (processes, registrations, ignored frames) are added
 * with the source machine's current state as `from` and `to` (no change), so a reader
 * of the first v1 files sees a harmless non-change. Workers record their own added
 * events (temporary processes, fd transfers) and send them in TRACE messages; those keep
 * the worker's time.
 */
import { kernelRandom } from '../../native/index.js';
import {
  TRACE_VERSION,
  type TraceDetails,
  type TraceEvent,
  type TraceKind,
  type TraceSink,
} from '../protocol/trace.js';

type Added = Pick<TraceEvent, 'process' | 'transfer' | 'register' | 'ignored'>;

export class TraceRecorder {
  readonly run: string;
  private seq = 0;
  /** Current state of each machine (source) as traced so far. */
  private readonly states = new Map<string, string>();
  private readonly pids = new Map<string, number>();

  constructor(private readonly sink: TraceSink) {
    this.run = kernelRandom(8).toString('hex');
  }

  /** A state change (from the coordinator's inspector or a worker's TRACE). */
  readonly state: TraceSink = (e) => {
    this.states.set(e.source, e.to);
    if (e.pid !== 0) this.pids.set(e.source, e.pid);
    this.emit({ ...e, kind: 'state' });
  };

  /**
   * An event of one of the added kinds, attributed to machine `source`: seen now by the
   * coordinator, or recorded by a worker at `at.time` (with its `at.details`).
   */
  note(
    source: string,
    kind: Exclude<TraceKind, 'state'>,
    added: Added,
    pid?: number,
    at: { time?: number; details?: TraceDetails } = {},
  ): void {
    const now = this.states.get(source) ?? '(start)';
    this.emit({
      v: TRACE_VERSION,
      time: at.time ?? performance.timeOrigin + performance.now(),
      source,
      pid: pid ?? this.pids.get(source) ?? 0,
      from: now,
      to: now,
      event: `pcr.${kind}`,
      details: at.details ?? {},
      kind,
      ...added,
    });
  }

  private emit(e: TraceEvent): void {
    this.sink({ ...e, run: this.run, seq: this.seq++ });
  }
}
