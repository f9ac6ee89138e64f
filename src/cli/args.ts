/** Shared argv parsing for the commands: node:util parseArgs with UsageError on bad input. */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from '../errors.js';

export type ParsedValues = Record<string, string | boolean | (string | boolean)[] | undefined>;

export function parseCommandArgs(
  command: string,
  argv: string[],
  options: NonNullable<ParseArgsConfig['options']>,
): ParsedValues {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values;
  } catch (err) {
    // parseArgs explains some errors over several lines: one line, like every error.
    throw new UsageError(`${command}: ${(err as Error).message.split('\n').join(' ')}`);
  }
}

/** A positive integer option, or a UsageError naming the option. */
export function intOption(
  command: string,
  name: string,
  value: string | undefined,
): number | undefined {
  if (value === undefined) return undefined;
  if (!/^[0-9]+$/.test(value))
    throw new UsageError(`${command}: --${name} must be a positive integer, got '${value}'`);
  const n = Number(value);
  if (!Number.isSafeInteger(n))
    throw new UsageError(`${command}: --${name} is too large, got '${value}'`);
  return n;
}
