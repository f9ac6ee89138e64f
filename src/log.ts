/**
 * The logger pidfd-cr tells what it does at each step (dump: freeze, walk, read,
 * classify, write; restore: plan, spawn, each phase, verify, hold, teardown). Separate
 * from the trace, which is the record of the machines. A minimal interface that a pino
 * Logger satisfies as it is, so an embedding tool passes its own; the default says
 * nothing. The CLI makes one from -v / --log-level / --log-file (src/cli/log.ts).
 */
export type LogFields = Record<string, unknown>;

export interface Logger {
  error(fields: LogFields, message: string): void;
  warn(fields: LogFields, message: string): void;
  info(fields: LogFields, message: string): void;
  debug(fields: LogFields, message: string): void;
}

const nothing = (): void => {};

/** Says nothing: the default of every library entry. */
export const silentLogger: Logger = {
  error: nothing,
  warn: nothing,
  info: nothing,
  debug: nothing,
};
