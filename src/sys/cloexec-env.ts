/**
 * For a program started by `restore --exec`: its close-on-exec pidfds had to lose
 * FD_CLOEXEC to survive execve; PIDFD_CR_CLOEXEC_FDS names them ("5,9"). This puts the
 * bit back on each (examples/pidfd-cr-cloexec.c is the same for C programs).
 */
import { setCloexec } from '../../native/index.js';
import { PcrError } from '../errors.js';

export const CLOEXEC_FDS_ENV = 'PIDFD_CR_CLOEXEC_FDS';

/** The fd numbers PIDFD_CR_CLOEXEC_FDS names ([] when unset or empty). */
export function cloexecFdsFromEnv(env: NodeJS.ProcessEnv = process.env): number[] {
  const text = env[CLOEXEC_FDS_ENV];
  if (text === undefined || text === '') return [];
  return text.split(',').map((s) => {
    if (!/^[0-9]+$/.test(s))
      throw new PcrError('PCR_ERR_USAGE', `${CLOEXEC_FDS_ENV}=${text}: ${s} is not an fd number`);
    return Number(s);
  });
}

/**
 * Sets FD_CLOEXEC on every fd PIDFD_CR_CLOEXEC_FDS names and removes the variable (so
 * that a child of the program does not act on it again). Returns the fds.
 */
export function restoreCloexecFromEnv(env: NodeJS.ProcessEnv = process.env): number[] {
  const fds = cloexecFdsFromEnv(env);
  for (const fd of fds) setCloexec(fd, true);
  delete env[CLOEXEC_FDS_ENV];
  return fds;
}
