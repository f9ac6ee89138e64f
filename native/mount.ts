/** Mounts, for the init of a new pid namespace (restore --pidns new): its own /proc. */
import { libc, check } from './libc.js';

const MS_NOSUID = 2;
const MS_NODEV = 4;
const MS_NOEXEC = 8;
const MS_REC = 0x4000;
const MS_PRIVATE = 0x40000;

/**
 * In a new mount namespace: every mount private (nothing propagates back to the
 * caller's namespace), then a procfs of our pid namespace on /proc, so that /proc/self,
 * fdinfo `Pid:` and `NSpid:` show the pids of this namespace.
 */
export function mountOwnProc(): void {
  check(libc.mount(null, '/', null, MS_REC | MS_PRIVATE, null), 'mount', '/ rprivate');
  check(
    libc.mount('proc', '/proc', 'proc', MS_NOSUID | MS_NODEV | MS_NOEXEC, null),
    'mount',
    'proc on /proc',
  );
}
