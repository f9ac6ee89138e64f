/** pidfd system calls: open, signal, getfd, PIDFD_GET_INFO, kcmp, pidfs file handles. */
import { PcrError } from '../src/errors.js';
import { libc, check, fail } from './libc.js';
import { SYS } from './sysno.js';

export const PIDFD_NONBLOCK = 0o4000; // = O_NONBLOCK
export const PIDFD_THREAD = 0o200; // = O_EXCL
export const FD_PIDFS_ROOT = -10002;
const PIDFD_GET_INFO = 0xc040ff0bn;
const PIDFS_HANDLE_TYPE = 0xfe;
const AT_EMPTY_PATH = 0x1000;
const KCMP_FILE = 0;

export const PIDFD_INFO = { PID: 1n, CREDS: 2n, CGROUPID: 4n, EXIT: 8n, COREDUMP: 16n } as const;

export function pidfdOpen(pid: number, flags = 0): number {
  return check(libc.pidfd_open(pid, flags), 'pidfd_open', `pid ${pid}`);
}

export function pidfdSendSignal(pidfd: number, sig: number): void {
  check(libc.pidfd_send_signal(pidfd, sig, null, 0), 'pidfd_send_signal', `pidfd ${pidfd}`);
}

/** Duplicates fd `targetFd` of the process behind `pidfd` into this process (cloexec). */
export function pidfdGetfd(pidfd: number, targetFd: number): number {
  return check(libc.pidfd_getfd(pidfd, targetFd, 0), 'pidfd_getfd', `fd ${targetFd}`);
}

/**
 * Runs `use` on a copy (pidfd_getfd) of fd `fd` of the process `holder` (a pidfd of it)
 * refers to, then closes the copy. Needs ptrace access to that process.
 */
export function withFdCopyVia<T>(holder: number, fd: number, use: (copy: number) => T): T {
  const copy = pidfdGetfd(holder, fd);
  try {
    return use(copy);
  } finally {
    libc.close(copy);
  }
}

/** withFdCopyVia through a pidfd of `pid` opened for it (and closed after). */
export function withFdCopy<T>(pid: number, fd: number, use: (copy: number) => T): T {
  const holder = pidfdOpen(pid);
  try {
    return withFdCopyVia(holder, fd, use);
  } finally {
    libc.close(holder);
  }
}

export interface PidfdInfo {
  mask: bigint;
  cgroupId: bigint;
  pid: number;
  tgid: number;
  ppid: number;
  ruid: number;
  rgid: number;
  /** Wait status word of the target; meaningful only when `mask` has PIDFD_INFO.EXIT. */
  exitCode: number;
  hasExit: boolean;
  hasPid: boolean;
}

/**
 * ioctl(PIDFD_GET_INFO). `struct pidfd_info` is 64 bytes: mask@0 cgroupid@8 pid@16
 * tgid@20 ppid@24 ruid@28 rgid@32 … exit_code@60. EXIT is filled only once the target
 * was reaped; asking a reaped target without EXIT gives ESRCH.
 */
export function pidfdGetInfo(
  pidfd: number,
  mask: bigint = PIDFD_INFO.PID | PIDFD_INFO.EXIT,
): PidfdInfo {
  const buf = Buffer.alloc(64);
  buf.writeBigUInt64LE(mask, 0);
  check(
    libc.ioctl(pidfd, PIDFD_GET_INFO, 'void *', buf),
    'ioctl(PIDFD_GET_INFO)',
    `pidfd ${pidfd}`,
  );
  const got = buf.readBigUInt64LE(0);
  return {
    mask: got,
    cgroupId: buf.readBigUInt64LE(8),
    pid: buf.readUInt32LE(16),
    tgid: buf.readUInt32LE(20),
    ppid: buf.readUInt32LE(24),
    ruid: buf.readUInt32LE(28),
    rgid: buf.readUInt32LE(32),
    exitCode: buf.readInt32LE(60),
    hasExit: (got & PIDFD_INFO.EXIT) !== 0n,
    hasPid: (got & PIDFD_INFO.PID) !== 0n,
  };
}

/**
 * kcmp(KCMP_FILE): 0 when fd1 of pid1 and fd2 of pid2 are one open file description;
 * 1 or 2 give a stable (obfuscated) order, usable for sorting.
 */
export function kcmpFile(pid1: number, fd1: number, pid2: number, fd2: number): 0 | 1 | 2 {
  const r = Number(
    libc.syscall(SYS.kcmp, 'int', pid1, 'int', pid2, 'int', KCMP_FILE, 'ulong', fd1, 'ulong', fd2),
  );
  if (r < 0) fail('kcmp', `pid ${pid1} fd ${fd1} / pid ${pid2} fd ${fd2}`);
  if (r > 2) throw new PcrError('PCR_ERR_SYSCALL', `kcmp returned ${r} (0, 1 or 2 expected)`);
  return r as 0 | 1 | 2;
}

/** name_to_handle_at on a pidfd: the pidfs handle, whose 8 bytes are the inode number. */
export function pidfsHandleIno(pidfd: number): bigint {
  const handle = Buffer.alloc(8 + 64);
  handle.writeUInt32LE(64, 0);
  const mnt = Buffer.alloc(4);
  check(
    libc.name_to_handle_at(pidfd, '', handle, mnt, AT_EMPTY_PATH),
    'name_to_handle_at',
    `pidfd ${pidfd}`,
  );
  const bytes = handle.readUInt32LE(0);
  const type = handle.readInt32LE(4);
  if (type !== PIDFS_HANDLE_TYPE || bytes !== 8) {
    throw new PcrError(
      'PCR_ERR_UNSUPPORTED',
      `unexpected pidfs handle type ${type} (${bytes} bytes)`,
    );
  }
  return handle.readBigUInt64LE(8);
}

/**
 * open_by_handle_at(FD_PIDFS_ROOT) with a handle forged from an inode number: a pidfd to
 * exactly that process if it is still alive or a zombie on this boot; ESTALE once it was
 * reaped or for an unknown inode. Needs no privilege; the result never has PIDFD_THREAD.
 */
export function openPidfdByIno(ino: bigint, flags = 0o2): number {
  const handle = Buffer.alloc(16);
  handle.writeUInt32LE(8, 0);
  handle.writeInt32LE(PIDFS_HANDLE_TYPE, 4);
  handle.writeBigUInt64LE(ino, 8);
  return check(
    libc.open_by_handle_at(FD_PIDFS_ROOT, handle, flags),
    'open_by_handle_at',
    `ino ${ino}`,
  );
}
