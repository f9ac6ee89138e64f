/**
 * `--viz FILE` of `restore` and `demo`: a trace sink that keeps the run's events, and
 * writes the HTML page (html.ts) once the run is over, whether it succeeded or not.
 */
import { closeSync, openSync, writeFileSync } from 'node:fs';
import { PcrError, UsageError } from '../errors.js';
import type { TraceEvent, TraceSink } from '../protocol/trace.js';
import type { VizEvent } from './events.js';
import { renderHtml } from './html.js';

export interface VizWriter {
  sink: TraceSink;
  /** Writes the page of the events seen so far; a failure is one line on stderr, not thrown. */
  write(): Promise<void>;
}

/**
 * The writer for `--viz path` (undefined without the option). The file is created now,
 * so a path that cannot be written is a usage error before anything runs.
 */
export function vizWriter(
  command: string,
  path: string | boolean | (string | boolean)[] | undefined,
  log: (line: string) => void = (l) => process.stderr.write(l + '\n'),
): VizWriter | undefined {
  if (path === undefined || typeof path !== 'string') return undefined;
  if (path === '') throw new UsageError(`${command}: --viz needs a file name, got ''`);
  try {
    closeSync(openSync(path, 'w'));
  } catch (err) {
    throw new PcrError('PCR_ERR_USAGE', `${command}: --viz ${path}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const events: VizEvent[] = [];
  let written = false;
  return {
    sink: (e: TraceEvent) => {
      events.push(e);
    },
    write: async () => {
      if (written) return;
      written = true;
      try {
        const html = await renderHtml(events, { title: `pidfd-cr ${command}`, warnings: [] });
        writeFileSync(path, html);
        log(`pidfd-cr: wrote the restore's page to ${path}`);
      } catch (err) {
        log(`pidfd-cr: --viz ${path}: not written: ${(err as Error)?.message ?? String(err)}`);
      }
    },
  };
}
