/**
 * `--trace`, `--trace-file F` and `--viz FILE` of restore and demo: their sinks, the
 * files created before anything runs (a path that cannot be opened is a usage error).
 */
import { PcrError, UsageError } from '../errors.js';
import type { TraceSink } from '../protocol/trace.js';
import {
  fileTraceSink,
  stderrTraceSink,
  teeSinks,
  type OrderedTraceSink,
} from '../restore/trace-sinks.js';
import { vizWriter, type VizWriter } from '../viz/collect.js';

export interface TraceOutputs {
  /** What the restore is given: every asked sink, or undefined when none was asked. */
  trace: TraceSink | undefined;
  /** --trace: flush it when the restore settles, before any error line. */
  stderrTrace: OrderedTraceSink | undefined;
  traceFile: ReturnType<typeof fileTraceSink> | undefined;
  viz: VizWriter | undefined;
}

export function traceOutputs(
  command: string,
  values: { trace?: unknown; 'trace-file'?: unknown; viz?: unknown },
): TraceOutputs {
  const path = values['trace-file'];
  const traceFile = typeof path === 'string' ? openTraceFile(command, path) : undefined;
  const viz = vizWriter(command, typeof values.viz === 'string' ? values.viz : undefined);
  const stderrTrace = values.trace === true ? stderrTraceSink() : undefined;
  const trace =
    stderrTrace || traceFile || viz ? teeSinks(stderrTrace, traceFile?.sink, viz?.sink) : undefined;
  return { trace, stderrTrace, traceFile, viz };
}

function openTraceFile(command: string, path: string): ReturnType<typeof fileTraceSink> {
  if (path === '') throw new UsageError(`${command}: --trace-file needs a file name, got ''`);
  try {
    return fileTraceSink(path);
  } catch (err) {
    throw new PcrError(
      'PCR_ERR_USAGE',
      `${command}: --trace-file ${path}: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
}
