/**
 * Reads a trace file (NDJSON, schema v1: docs/trace.md) for the visualizations. Broken
 * input is one PcrError line naming the file and the line (`PCR_ERR_TRACE_INVALID`), or,
 * where the rest still makes sense, a warning the page and the text output show: a
 * truncated last line (a run killed mid-write), an event kind this reader does not know,
 * a second run in one file.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { PcrError } from '../errors.js';
import { TRACE_VERSION } from '../protocol/trace.js';
import { KINDS, type EventKind, type VizEvent } from './events.js';

/** The largest trace file read (a demo's trace is ~30 KiB; a 1000-task restore ~10 MiB). */
export const MAX_TRACE_BYTES = 64 * 1024 * 1024;

export interface ReadTrace {
  events: VizEvent[];
  /** What was skipped or looks incomplete, one line each. */
  warnings: string[];
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const isInt = (v: unknown): v is number => Number.isSafeInteger(v);
const isIntList = (v: unknown): v is number[] => Array.isArray(v) && v.every(isInt);

/** Why the payload of a new-kind event is unusable, or undefined when it is fine. */
function payloadProblem(e: Obj, kind: EventKind): string | undefined {
  if (kind === 'process') {
    const p = e.process;
    if (!isObj(p)) return 'a process event without "process"';
    if (p.action !== 'spawn' && p.action !== 'exit')
      return `process.action is ${JSON.stringify(p.action)}`;
    if (!['coordinator', 'worker', 'temp', 'zombie'].includes(p.role as string))
      return `process.role is ${JSON.stringify(p.role)}`;
    if (!isInt(p.pid) || !isInt(p.ppid)) return 'process.pid/ppid are not integers';
  } else if (kind === 'fd-transfer') {
    const t = e.transfer;
    if (!isObj(t)) return 'an fd-transfer event without "transfer"';
    if (typeof t.id !== 'string' || (t.side !== 'send' && t.side !== 'recv'))
      return 'transfer.id/side missing';
    if (!isInt(t.sender) || !isInt(t.receiver)) return 'transfer.sender/receiver are not pids';
    if (!isIntList(t.files) || !isIntList(t.fds)) return 'transfer.files/fds are not number lists';
  } else if (kind === 'register') {
    const r = e.register;
    if (!isObj(r) || !isInt(r.task) || !isInt(r.pid)) return 'register.task/pid missing';
  }
  return undefined;
}

/**
 * The events of NDJSON `text`; `name` (the file) prefixes every message. Throws a
 * PcrError for input that is not a v1 trace at all.
 */
export function parseTrace(text: string, name: string): ReadTrace {
  const fail = (msg: string): never => {
    throw new PcrError('PCR_ERR_TRACE_INVALID', `trace ${name}: ${msg}`);
  };
  const events: VizEvent[] = [];
  const warnings: string[] = [];
  const lines = text.split('\n');
  // A complete file ends with a newline: the last element is then ''.
  const complete = lines[lines.length - 1] === '';
  if (complete) lines.pop();
  const runs = new Set<string>();
  let firstRun: string | undefined;
  let unknownKinds = 0;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const where = `line ${i + 1}`;
    if (line.trim() === '') continue;
    let raw: unknown;
    try {
      raw = JSON.parse(line);
    } catch {
      if (i === lines.length - 1 && !complete && events.length > 0) {
        warnings.push(
          `the last line (${line.length} bytes) is cut off: the run stopped while writing it; the trace ends at the event before`,
        );
        break;
      }
      fail(
        events.length === 0
          ? `not a trace file (NDJSON, docs/trace.md): ${where} is not JSON`
          : `${where} is not JSON`,
      );
    }
    if (!isObj(raw)) fail(`${where} is not a JSON object`);
    const e = raw as Obj;
    if (e.v !== TRACE_VERSION)
      fail(`${where}: schema version ${JSON.stringify(e.v)}, this reader knows v${TRACE_VERSION}`);
    if (typeof e.time !== 'number' || !Number.isFinite(e.time)) fail(`${where}: no "time"`);
    if (typeof e.source !== 'string' || !/^(coordinator|task:[0-9]+)$/.test(e.source))
      fail(
        `${where}: "source" must be "coordinator" or "task:<pid>", got ${JSON.stringify(e.source)}`,
      );
    if (!isInt(e.pid)) fail(`${where}: no "pid"`);
    for (const k of ['from', 'to', 'event'] as const)
      if (typeof e[k] !== 'string') fail(`${where}: no "${k}"`);
    if (e.details !== undefined && !isObj(e.details)) fail(`${where}: "details" is not an object`);
    const kind = (e.kind ?? 'state') as EventKind;
    if (!KINDS.includes(kind)) {
      unknownKinds++;
      continue;
    }
    const problem = payloadProblem(e, kind);
    if (problem) {
      warnings.push(`${where}: ${problem}; event skipped`);
      continue;
    }
    if (typeof e.run === 'string') {
      firstRun ??= e.run;
      runs.add(e.run);
      if (e.run !== firstRun) continue;
    }
    events.push({ ...(e as unknown as VizEvent), details: (e.details as Obj) ?? {} });
  }
  if (events.length === 0) fail('no events');
  if (unknownKinds > 0)
    warnings.push(`${unknownKinds} event(s) of kinds this reader does not know were skipped`);
  if (runs.size > 1)
    warnings.push(`the file holds ${runs.size} runs; only the first (${firstRun}) is shown`);
  return { events, warnings };
}

/** Reads and parses a trace file, refusing one larger than `maxBytes`. */
export function readTraceFile(path: string, maxBytes = MAX_TRACE_BYTES): ReadTrace {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw new PcrError('PCR_ERR_USAGE', `trace: ${path}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  try {
    const st = fstatSync(fd);
    if (st.isDirectory()) throw new PcrError('PCR_ERR_USAGE', `trace: ${path}: is a directory`);
    if (st.size > maxBytes)
      throw new PcrError(
        'PCR_ERR_TRACE_INVALID',
        `trace ${path}: ${st.size} bytes, more than the ${maxBytes} this command reads`,
      );
    // Read up to the cap (+1 byte to see a file that grew past it, or a pipe).
    const chunks: Buffer[] = [];
    let n = 0;
    for (;;) {
      const chunk = Buffer.alloc(Math.min(1 << 20, maxBytes + 1 - n));
      const r = readSync(fd, chunk, 0, chunk.length, null);
      if (r === 0) break;
      chunks.push(chunk.subarray(0, r));
      n += r;
      if (n > maxBytes)
        throw new PcrError(
          'PCR_ERR_TRACE_INVALID',
          `trace ${path}: more than the ${maxBytes} bytes this command reads`,
        );
    }
    return parseTrace(Buffer.concat(chunks, n).toString('utf8'), path);
  } finally {
    closeSync(fd);
  }
}
