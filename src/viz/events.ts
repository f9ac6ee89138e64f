/**
 * The trace events a visualization reads: schema v1 (docs/trace.md) with the fields and
 * kinds of the completed v1 (run, seq, kind, process, transfer, register, ignored,
 * details.failure). Every added field is optional here: a v1 trace written before they
 * existed is read the same way, with `kind` taken as "state".
 */
import type { TraceDetails, TraceEvent } from '../protocol/trace.js';

export type EventKind = 'state' | 'process' | 'fd-transfer' | 'register' | 'frame-ignored';

export interface ProcessFacts {
  action: 'spawn' | 'exit';
  role: 'coordinator' | 'worker' | 'temp' | 'zombie';
  pid: number;
  ppid: number;
  /** Dumped pid of the task (worker, zombie). */
  task?: number;
  /** Temp: the dead target's dumped pidfs ino (decimal). */
  ino?: string;
  /** Temp: dumped pid of the creator task. */
  creator?: number;
  startTime?: number;
  exitTime?: number;
  waitStatus?: number;
}

export interface TransferFacts {
  id: string;
  side: 'send' | 'recv';
  sender: number;
  receiver: number;
  files: number[];
  fds: number[];
}

export interface FailureFacts {
  code: string;
  message: string;
  syscall?: string;
  errno?: string;
}

export interface VizDetails extends TraceDetails {
  failure?: FailureFacts;
}

export interface VizEvent extends Omit<TraceEvent, 'details'> {
  details: VizDetails;
  run?: string;
  seq?: number;
  kind?: EventKind;
  process?: ProcessFacts;
  transfer?: TransferFacts;
  register?: { task: number; pid: number };
  ignored?: { reason: string };
}

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
