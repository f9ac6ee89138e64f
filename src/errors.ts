/**
 * Typed errors of pidfd-cr, after undici's `lib/core/errors.js`: one base class with a
 * stable `code`, one subclass per failure kind. The CLI maps codes to exit statuses
 * (see `exitCodeFor`), so scripts can tell failures apart without parsing messages.
 */

export type PcrErrorCode =
  | 'PCR_ERR_SYSCALL'
  | 'PCR_ERR_USAGE'
  | 'PCR_ERR_NO_SUCH_PROCESS'
  | 'PCR_ERR_PERMISSION'
  | 'PCR_ERR_TASK_EXITED'
  | 'PCR_ERR_IMAGE_DIR'
  | 'PCR_ERR_IMAGE_EXISTS'
  | 'PCR_ERR_IMAGE_INVALID'
  | 'PCR_ERR_UNSUPPORTED'
  | 'PCR_ERR_RESTORE'
  | 'PCR_ERR_VERIFY'
  | 'PCR_ERR_TIMEOUT'
  | 'PCR_ERR_LIMIT'
  | 'PCR_ERR_TRACE_INVALID'
  | 'PCR_ERR_OUTPUT_CLOSED'
  | 'PCR_ERR_CHECK'
  | 'PCR_ERR_HOOK_ABORTED'
  | 'PCR_ERR_EXEC'
  | 'PCR_ERR_HANDOFF_SOCKET'
  | 'PCR_ERR_PID_TAKEN'
  | 'PCR_ERR_PID_PRIVILEGE'
  | 'PCR_ERR_PID_RACE'
  | 'PCR_ERR_INTERNAL';

export class PcrError extends Error {
  readonly code: PcrErrorCode;
  constructor(code: PcrErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PcrError';
    this.code = code;
  }
}

/** A system call failed: carries the call's name, the errno number and its symbolic name. */
export class SyscallError extends PcrError {
  readonly syscall: string;
  readonly errno: number;
  /** Symbolic errno name, e.g. 'ESRCH'. */
  readonly errnoName: string;
  constructor(syscall: string, errno: number, errnoName: string, detail?: string) {
    super(
      'PCR_ERR_SYSCALL',
      `${syscall}${detail ? ` (${detail})` : ''} failed: ${errnoName} (${errno})`,
    );
    this.name = 'SyscallError';
    this.syscall = syscall;
    this.errno = errno;
    this.errnoName = errnoName;
  }
}

export class UsageError extends PcrError {
  constructor(message: string) {
    super('PCR_ERR_USAGE', message);
    this.name = 'UsageError';
  }
}

export class ImageError extends PcrError {
  /** Path of the image file, or of the field inside it, at fault. */
  readonly where: string;
  constructor(where: string, message: string, options?: { cause?: unknown }) {
    super('PCR_ERR_IMAGE_INVALID', `${where}: ${message}`, options);
    this.name = 'ImageError';
    this.where = where;
  }
}

/** Exit statuses of the CLI, one per error code; 1 is kept for "restored but differs". */
export const EXIT_CODES: Record<PcrErrorCode, number> = {
  PCR_ERR_VERIFY: 1,
  PCR_ERR_USAGE: 2,
  PCR_ERR_NO_SUCH_PROCESS: 3,
  PCR_ERR_PERMISSION: 4,
  PCR_ERR_TASK_EXITED: 5,
  PCR_ERR_IMAGE_DIR: 6,
  PCR_ERR_IMAGE_EXISTS: 7,
  PCR_ERR_IMAGE_INVALID: 8,
  PCR_ERR_UNSUPPORTED: 9,
  PCR_ERR_RESTORE: 10,
  PCR_ERR_TIMEOUT: 11,
  PCR_ERR_SYSCALL: 12,
  PCR_ERR_LIMIT: 13,
  PCR_ERR_TRACE_INVALID: 14,
  PCR_ERR_OUTPUT_CLOSED: 15,
  PCR_ERR_CHECK: 17,
  PCR_ERR_HOOK_ABORTED: 23,
  PCR_ERR_EXEC: 27,
  PCR_ERR_HANDOFF_SOCKET: 28,
  PCR_ERR_PID_TAKEN: 16,
  PCR_ERR_PID_PRIVILEGE: 20,
  PCR_ERR_PID_RACE: 21,
  PCR_ERR_INTERNAL: 70,
};

export function exitCodeFor(err: unknown): number {
  return err instanceof PcrError ? EXIT_CODES[err.code] : EXIT_CODES.PCR_ERR_INTERNAL;
}

export function isErrno(err: unknown, name: string): err is SyscallError {
  return err instanceof SyscallError && err.errnoName === name;
}
