/**
 * For a program started by `restore --exec`: its close-on-exec pidfds had to lose
 * FD_CLOEXEC to survive execve; PIDFD_CR_CLOEXEC_FDS names them ("5,9"). This puts the
 * bit back on each (examples/pidfd-cr-cloexec.c is the same for C programs).
 *
 * Node itself, starting, sets FD_CLOEXEC on some inherited fds (measured on Node 20:
 * fds below 19 that it finds open), so a Node program also clears the bit on the other
 * pidfds, those PIDFD_CR_FDS names and PIDFD_CR_CLOEXEC_FDS does not.
 */
import { setCloexec } from '../../native/index.js';
import { PcrError } from '../errors.js';

export const CLOEXEC_FDS_ENV = 'PIDFD_CR_CLOEXEC_FDS';
/** Every pidfd the program got, close-on-exec or not. */
export const PIDFDS_ENV = 'PIDFD_CR_FDS';

/** The fd numbers PIDFD_CR_CLOEXEC_FDS names ([] when unset or empty). */
export function cloexecFdsFromEnv(
  env: NodeJS.ProcessEnv = process.env,
  name = CLOEXEC_FDS_ENV,
): number[] {
  const text = env[name];
  if (text === undefined || text === '') return [];
  return text.split(',').map((s) => {
    if (!/^[0-9]+$/.test(s))
      throw new PcrError('PCR_ERR_USAGE', `${name}=${text}: ${s} is not an fd number`);
    return Number(s);
  });
}

/**
 * Sets FD_CLOEXEC on every fd PIDFD_CR_CLOEXEC_FDS names, clears it on the other pidfds
 * PIDFD_CR_FDS names, and removes both variables (so that a child of the program does
 * not act on them again). Returns the fds made close-on-exec.
 */
export function restoreCloexecFromEnv(env: NodeJS.ProcessEnv = process.env): number[] {
  const fds = cloexecFdsFromEnv(env);
  for (const fd of cloexecFdsFromEnv(env, PIDFDS_ENV)) if (!fds.includes(fd)) setCloexec(fd, false);
  for (const fd of fds) setCloexec(fd, true);
  delete env[CLOEXEC_FDS_ENV];
  delete env[PIDFDS_ENV];
  return fds;
}
