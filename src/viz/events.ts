/**
 * The trace events a visualization reads: schema v1 (docs/trace.md) with the fields and
 * kinds of the completed v1 (run, seq, kind, process, transfer, register, ignored,
 * details.failure). Every added field is optional here: a v1 trace written before they
 * existed is read the same way, with `kind` taken as "state".
 */
import type {
  TraceEvent,
  TraceFailure,
  TraceKind,
  TraceProcess,
  TraceTransfer,
} from '../protocol/trace.js';

// The runtime's own types (src/protocol/trace.ts), whose added fields are all optional:
// one definition, so a field the runtime adds is one the visualization can read.
export type EventKind = TraceKind;
export type ProcessFacts = TraceProcess;
export type TransferFacts = TraceTransfer;
export type FailureFacts = TraceFailure;
export type VizEvent = TraceEvent;

export const KINDS: readonly EventKind[] = [
  'state',
  'process',
  'fd-transfer',
  'register',
  'frame-ignored',
];

/** The kind of an event; a v1 event without one is a state change. */
export const kindOf = (e: VizEvent): EventKind => e.kind ?? 'state';

/** "task:42" → 42; undefined for the coordinator or anything else. */
export function taskOf(source: string): number | undefined {
  const m = /^task:([0-9]+)$/.exec(source);
  return m ? Number(m[1]) : undefined;
}

/** Time order; events of one run with equal times keep their `seq` (else file) order. */
export function byTime(a: VizEvent, b: VizEvent): number {
  return a.time - b.time || (a.seq ?? 0) - (b.seq ?? 0);
}
