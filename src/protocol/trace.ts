/**
 * The restore trace: every state change of every machine (the coordinator's and each
 * worker's task machine) as one TraceEvent, schema in docs/trace.md (`v: 1`, stable).
 * Events come from XState inspection: `@xstate.snapshot` of the root actor, compared with
 * the previous state value (`@xstate.transition` is declared but never emitted in 5.33).
 * Workers forward theirs over ZeroMQ (TRACE messages); the coordinator merges them.
 */
import type { InspectionEvent } from 'xstate';

export const TRACE_VERSION = 1;

type Obj = Record<string, unknown>;
const asObj = (v: unknown): Obj | undefined =>
  v && typeof v === 'object' ? (v as Obj) : undefined;

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
  /** The same failure, typed (when it came from a PcrError or an abort reason). */
  failure?: TraceFailure;
}

export interface TraceFailure {
  code: string;
  message: string;
  syscall?: string;
  /** Symbolic errno name, e.g. "ESRCH". */
  errno?: string;
}

/**
 * What an event records: a state change (the default), or one of the added kinds. Every
 * kind is listed in docs/trace.md (a test keeps the two equal).
 */
export const TRACE_KINDS = [
  'state',
  'process',
  'fd-transfer',
  'register',
  'frame-ignored',
] as const;
export type TraceKind = (typeof TRACE_KINDS)[number];

export interface TraceProcess {
  action: 'spawn' | 'exit';
  role: 'coordinator' | 'worker' | 'temp' | 'zombie';
  pid: number;
  ppid: number;
  /** Dumped pid of the task (worker, zombie). */
  task?: number;
  /** temp: the dead target's dumped pidfs ino, decimal. */
  ino?: string;
  /** temp: dumped pid of its creator. */
  creator?: number;
  startTime?: number;
  exitTime?: number;
  /** The raw wait status word. */
  waitStatus?: number;
}

export interface TraceTransfer {
  /** One id per SCM_RIGHTS message, the same on both sides (it travels in the message). */
  id: string;
  side: 'send' | 'recv';
  /** Dumped pids of the sending and the receiving task. */
  sender: number;
  receiver: number;
  /** File ids (image `PidfdFile.id`), in the message's fd order. */
  files: number[];
  /** One per file: the sender's fd it sent; the receiver's fd it installed the file at. */
  fds: number[];
}

/**
 * An added-kind event a worker records itself and sends as a TRACE message with `kind`
 * and `data` (the payload as JSON); the coordinator adds source, pid, from/to, run, seq.
 */
export type WorkerNote =
  | { kind: 'process'; time: number; process: TraceProcess; details?: TraceDetails }
  | { kind: 'fd-transfer'; time: number; transfer: TraceTransfer; details?: TraceDetails };
export type NoteSink = (note: WorkerNote) => void;

const isInt = (v: unknown): v is number => Number.isSafeInteger(v);
const isIntList = (v: unknown): v is number[] => Array.isArray(v) && v.every(isInt);

/**
 * A worker's note from the `kind` and `data` of its TRACE message, or a string saying
 * why it is not one (a worker records only its temporary processes, the reaping of its
 * zombie children and its transfers).
 */
export function parseWorkerNote(kind: string, data: string, time: number): WorkerNote | string {
  let raw: unknown;
  try {
    raw = JSON.parse(data);
  } catch {
    return `a ${kind} note whose data is not JSON`;
  }
  const o = asObj(raw);
  const details = asObj(o?.details) as TraceDetails | undefined;
  const extra = details ? { details } : {};
  if (kind === 'process') {
    const p = asObj(o?.process);
    const temp = p?.role === 'temp' && (p.action === 'spawn' || p.action === 'exit');
    // Zombies: the coordinator sees them spawned, their parent worker reaps them.
    if (!p || !(temp || (p.role === 'zombie' && p.action === 'exit')))
      return 'a process note that is not a temp spawn or exit, or a zombie exit';
    if (!isInt(p.pid) || !isInt(p.ppid)) return 'a process note without pid/ppid';
    return { kind, time, process: p as unknown as TraceProcess, ...extra };
  }
  if (kind === 'fd-transfer') {
    const t = asObj(o?.transfer);
    if (!t || typeof t.id !== 'string' || (t.side !== 'send' && t.side !== 'recv'))
      return 'an fd-transfer note without id/side';
    if (!isInt(t.sender) || !isInt(t.receiver) || !isIntList(t.files) || !isIntList(t.fds))
      return 'an fd-transfer note without sender/receiver/files/fds';
    return { kind, time, transfer: t as unknown as TraceTransfer, ...extra };
  }
  return `a note of kind ${JSON.stringify(kind)}, which workers do not record`;
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
  /** One id per restore run (added by the coordinator; absent in older files). */
  run?: string;
  /** 0, 1, 2, … per run in emission order. */
  seq?: number;
  /** Absent means "state". Other kinds keep from = to (no change) and event "pcr.<kind>". */
  kind?: TraceKind;
  process?: TraceProcess;
  transfer?: TraceTransfer;
  register?: { task: number; pid: number };
  ignored?: { reason: string };
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

const nums = (list: unknown, key: string): number[] | undefined => {
  if (!Array.isArray(list)) return undefined;
  const out = list.map((x) => asObj(x)?.[key]).filter((x): x is number => typeof x === 'number');
  return out.length > 0 ? out : undefined;
};

/** A typed failure from a PcrError, a SyscallError or a protocol Failure. */
function failureOf(v: unknown): TraceFailure | undefined {
  const f = asObj(v);
  if (typeof f?.code !== 'string' || typeof f.message !== 'string') return undefined;
  const errno = f.errnoName;
  return {
    code: f.code,
    message: f.message,
    ...(typeof f.syscall === 'string' ? { syscall: f.syscall } : {}),
    ...(typeof errno === 'string' ? { errno } : {}),
  };
}

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
  const failure = failureOf(event.error) ?? failureOf(event.failure) ?? failureOf(context?.failure);
  if (failure) d.failure = failure;
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

/** The added kinds, as one readable phrase ("spawn worker pid=123 ppid=100 task=42"). */
function noteText(e: TraceEvent): string {
  const kv = (o: object): string =>
    Object.entries(o)
      .filter(([k, v]) => v !== undefined && k !== 'action' && k !== 'role' && k !== 'side')
      .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join(',') : String(v)}`)
      .join(' ');
  if (e.process) return `${e.process.action} ${e.process.role} ${kv(e.process)}`;
  if (e.transfer) return `fds ${e.transfer.side} ${kv(e.transfer)}`;
  if (e.register) return `registered ${kv(e.register)}`;
  if (e.ignored) return `frame ignored: ${e.ignored.reason}`;
  return e.event;
}

/** One readable line: "+  12.3 ms  task:42       ready -> open-alive  PHASE  phase=open-alive". */
export function formatTraceLine(e: TraceEvent, t0: number): string {
  const dt = (e.time - t0).toFixed(1).padStart(8);
  if (e.kind !== undefined && e.kind !== 'state') {
    return `+${dt} ms  ${pad(e.source, 14)} * ${noteText(e)}`.trimEnd();
  }
  const d = Object.entries(e.details)
    .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join(',') : v}`)
    .join(' ');
  return `+${dt} ms  ${pad(e.source, 14)} ${pad(`${e.from} -> ${e.to}`, 38)} ${pad(e.event, 30)} ${d}`.trimEnd();
}
