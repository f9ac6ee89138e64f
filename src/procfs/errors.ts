/**
 * Turning a failed read under /proc into a typed error. A vanished /proc/P is
 * PCR_ERR_NO_SUCH_PROCESS; EACCES/EPERM there is the ptrace-access rule
 * (PCR_ERR_PERMISSION); anything else is a SyscallError naming the path.
 */
import { PcrError, SyscallError } from '../errors.js';

interface NodeFsError {
  code?: string;
  errno?: number;
  syscall?: string;
}

const errCode = (err: unknown): string | undefined => (err as NodeFsError | null)?.code;

/** ENOENT or ESRCH: the file, fd or process is gone. */
export function isGone(err: unknown): boolean {
  const code = errCode(err);
  return code === 'ENOENT' || code === 'ESRCH';
}

export function procReadError(pid: number, path: string, err: unknown): Error {
  const code = errCode(err);
  if (code === 'ENOENT' || code === 'ESRCH') {
    return new PcrError('PCR_ERR_NO_SUCH_PROCESS', `no such process: ${pid} (${path})`, {
      cause: err,
    });
  }
  if (code === 'EACCES' || code === 'EPERM') {
    return new PcrError(
      'PCR_ERR_PERMISSION',
      `cannot read ${path}: ${code}; reading another process's fds needs ptrace access ` +
        `(same uid and dumpable, or CAP_SYS_PTRACE)`,
      { cause: err },
    );
  }
  if (code !== undefined) {
    const e = err as NodeFsError;
    return new SyscallError(e.syscall ?? 'read', Math.abs(e.errno ?? 0), code, path);
  }
  if (err instanceof PcrError) return err;
  return new PcrError('PCR_ERR_INTERNAL', `reading ${path}: ${String(err)}`, { cause: err });
}
