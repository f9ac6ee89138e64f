/**
 * The restore trace: every state change of every machine (the coordinator's and each
 * worker's task machine) as one TraceEvent, schema in docs/trace.md (`v: 1`, stable).
 * Events come from XState inspection: `@xstate.snapshot` of the root actor, compared with
 * the previous state value (`@xstate.transition` is declared but never emitted in 5.33).
 * Workers forward theirs over ZeroMQ (TRACE messages); the coordinator merges them.
 */
import type { InspectionEvent } from 'xstate';

export const TRACE_VERSION = 1;

export interface TraceDetails {
  phase?: string;
  /** fd numbers concerned (installed, received, closed). */
  fd?: number[];
  /** File ids concerned. */
  files?: number[];
  /** pidfs inos concerned (decimal). */
  ino?: string[];
  /** Dumped pids of the peers (fd senders/receivers, the task a message is about). */
  peer?: number[];
  /** A failure, an abort reason. */
  error?: string;
}

export interface TraceEvent {
  v: typeof TRACE_VERSION;
  /** Milliseconds since the epoch (fractional). */
  time: number;
  /** "coordinator" or "task:<dumped pid>". */
  source: string;
  /** OS pid of the process that ran the machine. */
  pid: number;
  from: string;
  to: string;
  /** The event that caused the change (XState event type). */
  event: string;
  details: TraceDetails;
}

export type TraceSink = (event: TraceEvent) => void;

/** "become-creator.opening" for nested state values. */
export function stateName(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object') {
    return Object.entries(value as Record<string, unknown>)
      .map(([k, v]) => `${k}.${stateName(v)}`)
      .join(',');
  }
  return String(value);
}

type Obj = Record<string, unknown>;
const asObj = (v: unknown): Obj | undefined =>
  v && typeof v === 'object' ? (v as Obj) : undefined;
const nums = (list: unknown, key: string): number[] | undefined => {
  if (!Array.isArray(list)) return undefined;
  const out = list.map((x) => asObj(x)?.[key]).filter((x): x is number => typeof x === 'number');
  return out.length > 0 ? out : undefined;
};

/** Small, stable details from an event: phase, fds, files, peers, error. */
export function detailsOf(event: Obj, context: Obj | undefined): TraceDetails {
  const d: TraceDetails = {};
  const phase = event.phase ?? context?.phase;
  if (typeof phase === 'string') d.phase = phase;
  const output = asObj(event.output);
  const files = output?.files;
  const fd =
    nums(files, 'fd') ?? (Array.isArray(output?.closed) ? (output.closed as number[]) : undefined);
  if (fd && fd.length > 0) d.fd = fd;
  const fileIds = nums(files, 'fileId');
  if (fileIds) d.files = fileIds;
  const inos = nums(output?.temps, 'pid')
    ? (output?.temps as Obj[]).map((t) => String(t.ino))
    : undefined;
  if (inos) d.ino = inos;
  const peers = Array.isArray(output?.peers) ? (output.peers as number[]) : undefined;
  const peer = typeof event.pid === 'number' ? [event.pid] : peers;
  if (peer) d.peer = peer;
  const err = event.error ?? asObj(event.failure)?.message ?? asObj(context?.failure)?.message;
  if (err !== undefined) d.error = err instanceof Error ? err.message : String(err);
  return d;
}

/**
 * An XState `inspect` callback that turns state changes of the root actor into
 * TraceEvents for `sink`.
 */
export function traceInspector(
  source: string,
  sink: TraceSink,
  pid: number = process.pid,
): (ev: InspectionEvent) => void {
  let previous: string | undefined;
  return (ev) => {
    if (ev.type !== '@xstate.snapshot' || ev.actorRef.sessionId !== ev.rootId) return;
    const snap = ev.snapshot as { value?: unknown; context?: unknown; status?: string };
    const to = stateName(snap.value);
    if (to === previous) return;
    const from = previous ?? '(start)';
    previous = to;
    sink({
      v: TRACE_VERSION,
      time: performance.timeOrigin + performance.now(),
      source,
      pid,
      from,
      to,
      event: ev.event.type,
      details: detailsOf(ev.event as Obj, asObj(snap.context)),
    });
  };
}

const pad = (s: string, n: number): string => (s.length >= n ? s : s + ' '.repeat(n - s.length));

/** One readable line: "+  12.3 ms  task:42       ready -> open-alive  PHASE  phase=open-alive". */
export function formatTraceLine(e: TraceEvent, t0: number): string {
  const dt = (e.time - t0).toFixed(1).padStart(8);
  const d = Object.entries(e.details)
    .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join(',') : v}`)
    .join(' ');
  return `+${dt} ms  ${pad(e.source, 14)} ${pad(`${e.from} -> ${e.to}`, 38)} ${pad(e.event, 30)} ${d}`.trimEnd();
}
