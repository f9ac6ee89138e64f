/**
 * Where trace events go: a readable timeline on stderr (`--trace`, in time order) and NDJSON through
 * pino's synchronous destination (`--trace-file F`): asynchronous destinations lost
 * everything on process.exit() here, transports lost everything on SIGTERM (shared
 * notes/node-stack.md).
 */
import { closeSync, openSync } from 'node:fs';
import { pino } from 'pino';
import { SyscallError } from '../errors.js';
import { formatTraceLine, type TraceEvent, type TraceSink } from '../protocol/trace.js';

/**
 * How long a `--trace` line is held back so that the lines of every process come out in
 * time order: a worker's event reaches the coordinator after it happened (its TRACE frame
 * travels over ZeroMQ; a received fd is traced once it is installed): typically 1–5 ms,
 * measured. Short, so that `--trace` stays live (a line says where a restore is now).
 */
export const TRACE_HOLD_MS = 25;

/** A trace sink that prints in time order; `flush()` prints what it still holds. */
export interface OrderedTraceSink extends TraceSink {
  flush(): void;
}

export interface StderrTraceOptions {
  /** How long a line is held back (default TRACE_HOLD_MS). */
  holdMs?: number;
  /** The clock (epoch ms, the events' clock); for tests. */
  now?: () => number;
}

/**
 * The readable timeline (`--trace`): one line per event, in time order. Each event is
 * held until it is `holdMs` old, then printed with every held event older than it, sorted
 * by time (and seq); a timer prints what is due when no event comes. An event that
 * arrives later than that (a heavily loaded machine) is printed at once with its own
 * time, out of order. Call `flush()` at the end: it prints everything still held.
 */
export function stderrTraceSink(
  write: (line: string) => void = (l) => process.stderr.write(l),
  opts: StderrTraceOptions = {},
): OrderedTraceSink {
  const holdMs = opts.holdMs ?? TRACE_HOLD_MS;
  const now = opts.now ?? ((): number => performance.timeOrigin + performance.now());
  let t0: number | undefined;
  let printedUpTo = -Infinity;
  let held: TraceEvent[] = [];
  let timer: NodeJS.Timeout | undefined;
  const print = (e: TraceEvent): void => {
    t0 ??= e.time;
    printedUpTo = Math.max(printedUpTo, e.time);
    write(formatTraceLine(e, t0) + '\n');
  };
  const byTime = (a: TraceEvent, b: TraceEvent): number =>
    a.time - b.time || (a.seq ?? 0) - (b.seq ?? 0);
  const release = (cutoff: number): void => {
    const due = held.filter((e) => e.time <= cutoff);
    if (due.length === 0) return;
    held = held.filter((e) => e.time > cutoff);
    due.sort(byTime).forEach(print);
  };
  const schedule = (): void => {
    if (timer || held.length === 0) return;
    const oldest = Math.min(...held.map((e) => e.time));
    const wait = Math.max(1, oldest + holdMs - now());
    timer = setTimeout(() => {
      timer = undefined;
      release(now() - holdMs);
      schedule();
    }, wait);
    timer.unref();
  };
  const sink = ((e: TraceEvent) => {
    if (e.time < printedUpTo) return print(e);
    held.push(e);
    release(now() - holdMs);
    schedule();
  }) as OrderedTraceSink;
  sink.flush = () => {
    if (timer) clearTimeout(timer);
    timer = undefined;
    release(Infinity);
  };
  return sink;
}

export interface FileTraceSink {
  /** Writes one event; throws the SyscallError of the first failed write (and every later call). */
  sink: TraceSink;
  /** The first write (or close) that failed, naming the file and the errno. */
  readonly error: SyscallError | undefined;
  /** Closes the file (everything is written already); a failure is kept in `error`. */
  close(): void;
}

/** A Node fs error (negative errno, code, syscall) as our typed SyscallError. */
function fsError(err: unknown, fallback: string, path: string): SyscallError {
  const e = err as NodeJS.ErrnoException;
  return new SyscallError(
    e.syscall ?? fallback,
    Math.abs(e.errno ?? 0),
    e.code ?? 'EIO',
    `trace file ${path}`,
  );
}

/**
 * One JSON object per line, exactly the TraceEvent fields. Lines are written straight to
 * pino's synchronous destination: pino's own serialiser always adds a level (an empty
 * level formatter makes it emit invalid JSON, `{,"v":1…`), which the schema has no use for.
 *
 * The file is opened here (truncated: one file holds one run), so an unusable path fails
 * at once with Node's error. A failed write (ENOSPC on a full disk or /dev/full, EIO, EPIPE
 * on a pipe whose reader left) must surface, not hang: sonic-boom, under
 * pino.destination, reports a failed synchronous write as an `'error'` event (pino's own
 * listener swallows EPIPE, ours still sees it), but its `flushSync()` retries any error
 * forever (sleeping 100 ms each time) and by default retries EAGAIN forever. So: an
 * `'error'` listener turns the failure into a SyscallError that the sink throws (the
 * restore then stops: restore/session.ts), EAGAIN is not retried, and `flushSync()` is
 * never called (with `minLength: 0` every line is written before `write()` returns, so
 * there is nothing to flush).
 */
export function fileTraceSink(path: string): FileTraceSink {
  const fd = openSync(path, 'w');
  const dest = pino.destination({ fd, sync: true, minLength: 0, retryEAGAIN: () => false });
  let error: SyscallError | undefined;
  let closed = false;
  dest.on('error', (err: unknown) => {
    error ??= fsError(err, 'write', path);
  });
  return {
    sink: (e: TraceEvent) => {
      if (error) throw error;
      if (closed) return;
      dest.write(JSON.stringify(e) + '\n');
      if (error) throw error;
    },
    get error() {
      return error;
    },
    close: () => {
      if (closed) return;
      closed = true;
      // Not dest.end()/flushSync(): nothing is buffered, and they retry errors forever.
      try {
        closeSync(fd);
      } catch (err) {
        error ??= fsError(err, 'close', path);
      }
    },
  };
}

/** Fans one event out to several sinks. */
export const teeSinks =
  (...sinks: Array<TraceSink | undefined>): TraceSink =>
  (e) => {
    for (const s of sinks) s?.(e);
  };
