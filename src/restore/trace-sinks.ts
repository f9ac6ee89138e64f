/**
 * Where trace events go: a readable timeline on stderr (`--trace`) and NDJSON through
 * pino (`--trace-file F`). pino writes through `pino.destination({ dest, sync: true })`:
 * asynchronous destinations lost everything on process.exit() here, transports lost
 * everything on SIGTERM (shared notes/node-stack.md).
 */
import { pino } from 'pino';
import { formatTraceLine, type TraceEvent, type TraceSink } from './trace.js';

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
  sink: TraceSink;
  /** Flushes and closes the file. */
  close(): void;
}

/**
 * One JSON object per line, exactly the TraceEvent fields. Lines are written straight to
 * pino's synchronous destination: pino's own serialiser always adds a level (an empty
 * level formatter makes it emit invalid JSON, `{,"v":1…`), which the schema has no use for.
 */
export function fileTraceSink(path: string): FileTraceSink {
  // append: false truncates: one file holds one run.
  const dest = pino.destination({ dest: path, sync: true, mkdir: false, append: false });
  return {
    sink: (e: TraceEvent) => {
      dest.write(JSON.stringify(e) + '\n');
    },
    close: () => {
      dest.flushSync();
      dest.end();
    },
  };
}

/** Fans one event out to several sinks. */
export const teeSinks =
  (...sinks: Array<TraceSink | undefined>): TraceSink =>
  (e) => {
    for (const s of sinks) s?.(e);
  };
