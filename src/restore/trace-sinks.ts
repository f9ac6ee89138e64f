/**
 * Where trace events go: a readable timeline on stderr (`--trace`) and NDJSON through
 * pino's synchronous destination (`--trace-file F`): asynchronous destinations lost
 * everything on process.exit() here, transports lost everything on SIGTERM (shared
 * notes/node-stack.md).
 */
import { closeSync, openSync } from 'node:fs';
import { pino } from 'pino';
import { SyscallError } from '../errors.js';
import { formatTraceLine, type TraceEvent, type TraceSink } from '../protocol/trace.js';

export function stderrTraceSink(
  write: (line: string) => void = (l) => process.stderr.write(l),
): TraceSink {
  let t0: number | undefined;
  return (e) => {
    t0 ??= e.time;
    write(formatTraceLine(e, t0) + '\n');
  };
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
