/** Turning a thrown error into a reportable Failure, and naming one in a sentence. Pure. */
import { PcrError, SyscallError } from '../errors.js';
import type { Failure } from '../protocol/messages.js';
import type { Phase } from '../plan/types.js';

export function failureFromError(err: unknown, phase: Phase): Failure {
  if (err instanceof SyscallError) {
    return {
      code: err.code,
      message: err.message,
      phase,
      syscall: err.syscall,
      errno: err.errno,
      errnoName: err.errnoName,
    };
  }
  if (err instanceof PcrError) return { code: err.code, message: err.message, phase };
  const message = err instanceof Error ? err.message : String(err);
  return { code: 'PCR_ERR_INTERNAL', message, phase };
}

export function describeFailure(pid: number, f: Failure): string {
  return `task ${pid} failed in phase ${f.phase}: ${f.message}`;
}
