/** pidfd open-file flags: which ones pidfd_open can make, and naming them. Pure. */
import { FLAGS } from '../model/image.js';

/** Every flag pidfd_open(2) can put on a file: O_RDWR always, PIDFD_NONBLOCK, PIDFD_THREAD. */
const MAKEABLE = FLAGS.O_RDWR | FLAGS.O_NONBLOCK | FLAGS.O_EXCL;

/** True if pidfd_open(pid, flags & ~O_RDWR) gives a file with exactly these f_flags. */
export function pidfdOpenCanMake(flags: number): boolean {
  return (flags & FLAGS.O_ACCMODE) === FLAGS.O_RDWR && (flags & ~MAKEABLE) === 0;
}

/** The flags argument of pidfd_open for a file with these f_flags. */
export function pidfdOpenFlags(flags: number): number {
  return flags & (FLAGS.O_NONBLOCK | FLAGS.O_EXCL);
}

/**
 * The open(2) flags that reproduce `flags` by reopening a pidfd through /proc/self/fd/N,
 * or undefined. Measured on 6.18: such a reopen keeps the pidfs ino (and a reaped
 * target's state), always adds O_LARGEFILE, takes any access mode and O_NONBLOCK, and
 * drops O_EXCL. pidfs inodes are mode 0700 owned by root: it needs CAP_DAC_OVERRIDE.
 */
export function reopenFlagsFor(flags: number): number | undefined {
  const access = flags & FLAGS.O_ACCMODE;
  const rest = flags & ~FLAGS.O_ACCMODE;
  if (access === FLAGS.O_ACCMODE || (rest & FLAGS.O_LARGEFILE) === 0) return undefined;
  if ((rest & ~(FLAGS.O_LARGEFILE | FLAGS.O_NONBLOCK)) !== 0) return undefined;
  return access | (rest & FLAGS.O_NONBLOCK);
}

/**
 * True if `flags` is made by open_by_handle_at(FD_PIDFS_ROOT, handle(ino), O_WRONLY |
 * [O_NONBLOCK] | [O_CLOEXEC]). Measured on 6.18: that open gives f_flags 03 (RDONLY and
 * RDWR give 02), keeps O_NONBLOCK, drops O_EXCL and O_LARGEFILE, and keeps O_CLOEXEC in
 * f_flags (02000002, 02000003: the only way a pidfd's file carries it); it needs no
 * privilege and works for a live or zombie target (ESTALE once reaped). /proc/self/fd
 * cannot make 03 (it adds O_LARGEFILE) and pidfd_open gives 02.
 */
export function byHandleCanMake(flags: number): boolean {
  const rest = flags & ~(FLAGS.O_NONBLOCK | FLAGS.O_CLOEXEC);
  return rest === FLAGS.O_ACCMODE || (rest === FLAGS.O_RDWR && (flags & FLAGS.O_CLOEXEC) !== 0);
}

/** The open_by_handle_at flags that make `flags` (byHandleCanMake). */
export function byHandleOpenFlags(flags: number): number {
  const access = (flags & FLAGS.O_ACCMODE) === FLAGS.O_ACCMODE ? 0o1 : FLAGS.O_RDWR;
  return access | (flags & (FLAGS.O_NONBLOCK | FLAGS.O_CLOEXEC));
}

export function isThreadFlags(flags: number): boolean {
  return (flags & FLAGS.O_EXCL) !== 0;
}

const NAMES: [number, string][] = [
  [FLAGS.O_EXCL, 'O_EXCL(PIDFD_THREAD)'],
  [FLAGS.O_NONBLOCK, 'O_NONBLOCK'],
  [FLAGS.O_LARGEFILE, 'O_LARGEFILE'],
  [FLAGS.O_CLOEXEC, 'O_CLOEXEC'],
];

/** "0100002 (O_RDWR|O_LARGEFILE)": octal as fdinfo shows it, and the names. */
export function describeFlags(flags: number): string {
  const access = ['O_RDONLY', 'O_WRONLY', 'O_RDWR', 'O_ACCMODE'][flags & FLAGS.O_ACCMODE];
  let rest = flags & ~FLAGS.O_ACCMODE;
  const names = [access ?? ''];
  for (const [bit, name] of NAMES) {
    if (rest & bit) names.push(name);
    rest &= ~bit;
  }
  if (rest !== 0) names.push(`0${rest.toString(8)}`);
  return `0${flags.toString(8)} (${names.join('|')})`;
}
