/**
 * How a worker makes one pidfd file (open file description), by target kind:
 * - alive / zombie in the tree: pidfd_open(restored pid, flags);
 * - thread: pidfd_open(tid, PIDFD_THREAD) of a live non-leader thread of this process;
 * - external: pidfd_open(pid, flags), then the pidfs handle (= ino) must equal the
 *   dumped ino on the same boot, else the pid now names another process.
 * Flags pidfd_open cannot give come from a second open of the first pidfd (openAs).
 * And how it is installed: dup3 onto each fd number of the task that holds this file
 * (close-on-exec until `finalize` sets the recorded bit), so several fds of one file share
 * one open file description, as dup did before the dump.
 */
import { readFileSync } from 'node:fs';
import {
  pidfdOpen,
  openPath,
  getStatusFlags,
  pidfsHandleIno,
  openPidfdByIno,
  dup3,
  closeQuiet,
  setCloexec,
  O_CLOEXEC,
} from '../../native/index.js';
import { bootId } from '../procfs/host.js';
import { FLAGS } from '../model/image.js';
import { byHandleCanMake, byHandleOpenFlags } from '../model/flags.js';
import { PcrError, isErrno } from '../errors.js';

const PIDFD_OPEN_FLAGS = FLAGS.O_NONBLOCK | FLAGS.O_EXCL;
const REOPEN_FLAGS = FLAGS.O_ACCMODE | FLAGS.O_NONBLOCK | FLAGS.O_LARGEFILE;

export interface OpenFlags {
  /** The f_flags the file must end up with (O_CLOEXEC only if the file carries it). */
  flags: number;
  /** The flags argument of pidfd_open: PIDFD_NONBLOCK, PIDFD_THREAD. */
  pidfdFlags: number;
  /** Re-open /proc/self/fd/N with these (O_LARGEFILE, other access modes). */
  reopenFlags?: number;
}

/** How to make a file with `flags`: pidfd_open alone, or pidfd_open then a re-open. */
export function openFlagsFor(flags: number): OpenFlags {
  const pidfdFlags = flags & PIDFD_OPEN_FLAGS;
  if (flags === (FLAGS.O_RDWR | pidfdFlags)) return { flags, pidfdFlags };
  return { flags, pidfdFlags, reopenFlags: flags & ~FLAGS.O_LARGEFILE };
}

/**
 * Access mode 03, or O_CLOEXEC in f_flags: open_by_handle_at(FD_PIDFS_ROOT, handle(ino of
 * `first`), …) (plan/flags.ts byHandleCanMake; no privilege; the target must not be
 * reaped yet; ESTALE once it is).
 */
const isByHandle = byHandleCanMake;

function reopen(first: number, how: OpenFlags): number {
  if (isByHandle(how.flags)) {
    // O_CLOEXEC only when the file had it: the kernel keeps it in f_flags (F_GETFL
    // 02000003), where fdinfo shows it for ever; FD_CLOEXEC is set either way.
    const fd = openPidfdByIno(pidfsHandleIno(first), byHandleOpenFlags(how.flags));
    setCloexec(fd, true);
    return fd;
  }
  return openPath(`/proc/self/fd/${first}`, how.reopenFlags! | O_CLOEXEC);
}

/**
 * A pidfd to `pid` with exactly the planned file flags. pidfd_open gives O_RDWR plus
 * PIDFD_NONBLOCK/PIDFD_THREAD; other access modes and O_LARGEFILE come from re-opening
 * /proc/self/fd/N (measured: gives O_LARGEFILE | the mode asked, same ino; pidfs inodes
 * are 0700 root, so this needs CAP_DAC_OVERRIDE), which cannot keep PIDFD_THREAD; access
 * mode 03 from open_by_handle_at (isByHandle). The result is checked with F_GETFL.
 */
export function openAs(pid: number, how: OpenFlags): number {
  const first = pidfdOpen(pid, how.pidfdFlags);
  if (how.reopenFlags === undefined) return first;
  try {
    const viaProc = (how.flags & ~REOPEN_FLAGS) === 0 && (how.flags & FLAGS.O_LARGEFILE) !== 0;
    if (!viaProc && !isByHandle(how.flags)) {
      throw new PcrError(
        'PCR_ERR_UNSUPPORTED',
        `pidfd flags 0${how.flags.toString(8)} (target pid ${pid}) cannot be reproduced`,
      );
    }
    const fd = reopen(first, how);
    const got = getStatusFlags(fd);
    if (got !== how.flags) {
      closeQuiet(fd);
      throw new PcrError(
        'PCR_ERR_RESTORE',
        `re-opened pidfd of pid ${pid} has flags 0${got.toString(8)}, wanted 0${how.flags.toString(8)}`,
      );
    }
    return fd;
  } finally {
    closeQuiet(first);
  }
}

/** A pidfd to `pid` whose file flags are exactly `flags` (see openAs). */
export function openPidfd(pid: number, flags: number): number {
  return openAs(pid, openFlagsFor(flags));
}

/** CAP_DAC_OVERRIDE in our effective set (/proc/self/status CapEff, bit 1). */
export function hasDacOverride(): boolean {
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
  return m !== null && (BigInt(`0x${m[1]}`) & 2n) !== 0n;
}

export interface ExternalTarget {
  /** fdinfo Pid at dump time: the tid for a thread pidfd. */
  pid: number;
  ino: bigint;
  comm: string;
}

/**
 * Re-opens a target outside the tree. A pidfs ino is a per-boot counter: only on the same
 * boot, and only if pid_open's file has the dumped ino, is it the same process.
 */
export function openExternal(
  target: ExternalTarget,
  flags: number | OpenFlags,
  imageBootId: string,
  currentBootId: string = bootId(),
): number {
  const name = `external target ${target.comm ? `${target.comm} ` : ''}(pid ${target.pid}, ino ${target.ino})`;
  if (imageBootId !== currentBootId) {
    throw new PcrError(
      'PCR_ERR_RESTORE',
      `${name}: the image is from boot ${imageBootId}, this is boot ${currentBootId}`,
    );
  }
  let fd: number;
  try {
    fd = openAs(target.pid, typeof flags === 'number' ? openFlagsFor(flags) : flags);
  } catch (err) {
    if (isErrno(err, 'ESRCH') || isErrno(err, 'ENOENT')) {
      throw new PcrError('PCR_ERR_RESTORE', `${name}: gone (pidfd_open: ESRCH)`, { cause: err });
    }
    throw err;
  }
  const ino = pidfsHandleIno(fd);
  if (ino !== target.ino) {
    closeQuiet(fd);
    throw new PcrError(
      'PCR_ERR_RESTORE',
      `${name}: gone, pid ${target.pid} is now another process (ino ${ino})`,
    );
  }
  return fd;
}

/**
 * Puts `fd` at every number in `numbers` (close-on-exec for now; finalize sets the
 * recorded bit) and closes the original unless it is one of them. dup3 replaces the
 * placeholder reserved at spawn atomically.
 */
export function installFile(fd: number, numbers: readonly number[]): void {
  for (const n of numbers) if (n !== fd) dup3(fd, n, true);
  if (!numbers.includes(fd)) closeQuiet(fd);
}

/** Sets exactly the recorded close-on-exec bit of each installed fd. */
export function finalizeCloexec(fds: ReadonlyArray<{ fd: number; cloexec: boolean }>): void {
  for (const { fd, cloexec } of fds) setCloexec(fd, cloexec);
}
