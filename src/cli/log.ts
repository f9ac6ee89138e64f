/**
 * The CLI's log (docs/cli.md "Logs"): `-v` (repeatable), `--log-level LEVEL`,
 * `--log-file F`, through pino. JSON lines to the file; on stderr, one readable line per
 * record when stderr is a terminal or with -v, JSON lines otherwise. Default: nothing.
 * Every destination is synchronous (pino.destination with sync: true, or stderr, which
 * Node writes synchronously for files, terminals and pipes), so nothing is lost when the
 * command exits, even by process.exit on a second signal (notes: node-stack.md).
 */
import { openSync } from 'node:fs';
import type { DestinationStream, Level } from 'pino';
import { PcrError, UsageError } from '../errors.js';
import type { Logger } from '../log.js';
import type { ParsedValues } from './args.js';
import { printable } from '../text.js';

/** The options every command that logs takes (spread into its parseCommandArgs). */
export const LOG_OPTIONS = {
  verbose: { type: 'boolean', short: 'v', multiple: true },
  'log-level': { type: 'string' },
  'log-file': { type: 'string' },
} as const;

export const LOG_HELP = `  -v, --verbose          log what the command does at each step (-v info, -vv debug)
      --log-level LEVEL  silent, fatal, error, warn, info, debug or trace
      --log-file F       append the log to F as JSON lines (default level info)`;

const LEVELS = ['silent', 'fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const;
type LogLevel = (typeof LEVELS)[number];

const LEVEL_NAMES: Record<number, string> = {
  10: 'TRACE',
  20: 'DEBUG',
  30: 'INFO',
  40: 'WARN',
  50: 'ERROR',
  60: 'FATAL',
};

/** Fields every record has, left out of the text line's key=value list. */
const BASE = new Set(['level', 'time', 'pid', 'msg', 'hostname', 'cmd']);

/** One pino JSON record as one readable line: `12:00:01.234 INFO  msg key=value …`. */
export function textLine(json: string): string {
  let r: Record<string, unknown>;
  try {
    r = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json.endsWith('\n') ? json : `${json}\n`;
  }
  const time = typeof r.time === 'number' ? new Date(r.time).toISOString().slice(11, 23) : '';
  const level = (LEVEL_NAMES[Number(r.level)] ?? String(r.level)).padEnd(5);
  const fields = Object.entries(r)
    .filter(([k]) => !BASE.has(k))
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
  const text = printable(
    `${time} ${level} ${String(r.msg ?? '')}${fields.length ? `  ${fields.join(' ')}` : ''}`,
  );
  return `${text}\n`;
}

/** stderr, each record as one readable line. */
const textStderr: DestinationStream = {
  write: (s: string) => {
    for (const line of s.split('\n')) if (line !== '') process.stderr.write(textLine(line));
  },
};

export interface CliLog {
  /** undefined: nothing is logged (the library's silent default). */
  logger: Logger | undefined;
  /** The log file's destination, if any, flushed and closed. */
  close(): void;
}

function levelOf(command: string, values: ParsedValues): LogLevel | undefined {
  const given = values['log-level'];
  if (typeof given === 'string') {
    if (!(LEVELS as readonly string[]).includes(given))
      throw new UsageError(
        `${command}: --log-level must be one of ${LEVELS.join(', ')}, got '${printable(given)}'`,
      );
    return given as LogLevel;
  }
  const v = Array.isArray(values.verbose) ? values.verbose.length : values.verbose ? 1 : 0;
  if (v >= 3) return 'trace';
  if (v === 2) return 'debug';
  if (v === 1) return 'info';
  return typeof values['log-file'] === 'string' ? 'info' : undefined;
}

/**
 * The logger asked for by the command line (checked before the command does anything).
 * pino is loaded only when something is logged: evaluating it costs a command ≈ 4 ms of
 * CPU at start-up (the dump's speed target, docs/restore.md "Dump speed").
 */
export async function cliLogger(command: string, values: ParsedValues): Promise<CliLog> {
  const level = levelOf(command, values);
  const file = values['log-file'];
  if (file === '') throw new UsageError(`${command}: --log-file needs a file name, got ''`);
  if (level === undefined || level === 'silent') return { logger: undefined, close: () => {} };
  const verbose = values.verbose !== undefined;
  const { pino } = await import('pino');
  let dest: DestinationStream;
  let close = (): void => {};
  if (typeof file === 'string') {
    let fd: number;
    try {
      fd = openSync(file, 'a', 0o600);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      throw new PcrError(
        'PCR_ERR_USAGE',
        `${command}: --log-file ${printable(file)}: cannot open it: ${e.code ?? e.message} (${Math.abs(e.errno ?? 0)})`,
        { cause: err },
      );
    }
    const boom = pino.destination({ fd, sync: true, minLength: 0 });
    dest = boom;
    close = () => {
      try {
        boom.flushSync();
      } catch {
        // nothing pending, or the file is gone: nothing more to do
      }
      boom.end();
    };
  } else {
    dest = process.stderr.isTTY || verbose ? textStderr : process.stderr;
  }
  const logger = pino(
    {
      level: level as Level,
      base: { pid: process.pid, cmd: command },
      timestamp: pino.stdTimeFunctions.epochTime,
    },
    dest,
  );
  return { logger, close };
}
