/** Plain fd calls: dup3, fcntl flags, close, open. */
import { libc, check } from './libc.js';

export const O_CLOEXEC = 0o2000000;
export const O_NONBLOCK = 0o4000;
const F_GETFD = 1;
const F_SETFD = 2;
const F_GETFL = 3;
const F_SETFL = 4;
const F_DUPFD_CLOEXEC = 1030;
const FD_CLOEXEC = 1;

export function dup3(oldFd: number, newFd: number, cloexec: boolean): number {
  return check(libc.dup3(oldFd, newFd, cloexec ? O_CLOEXEC : 0), 'dup3', `${oldFd} -> ${newFd}`);
}

/** fcntl(F_DUPFD_CLOEXEC): a copy at the lowest free number ≥ minFd. */
export function dupAbove(fd: number, minFd: number): number {
  return check(libc.fcntl(fd, F_DUPFD_CLOEXEC, 'int', minFd), 'fcntl(F_DUPFD_CLOEXEC)', `fd ${fd}`);
}

export function getCloexec(fd: number): boolean {
  return (check(libc.fcntl(fd, F_GETFD), 'fcntl(F_GETFD)', `fd ${fd}`) & FD_CLOEXEC) !== 0;
}

export function setCloexec(fd: number, on: boolean): void {
  check(libc.fcntl(fd, F_SETFD, 'int', on ? FD_CLOEXEC : 0), 'fcntl(F_SETFD)', `fd ${fd}`);
}

/** File status flags of the open file description (access mode, O_NONBLOCK, O_EXCL …). */
export function getStatusFlags(fd: number): number {
  return check(libc.fcntl(fd, F_GETFL), 'fcntl(F_GETFL)', `fd ${fd}`);
}

export function setStatusFlags(fd: number, flags: number): void {
  check(libc.fcntl(fd, F_SETFL, 'int', flags), 'fcntl(F_SETFL)', `fd ${fd}`);
}

export function closeFd(fd: number): void {
  check(libc.close(fd), 'close', `fd ${fd}`);
}

/** close() that ignores EBADF, for cleanup paths. */
export function closeQuiet(fd: number): void {
  libc.close(fd);
}

export function openPath(path: string, flags: number): number {
  return check(libc.open(path, flags, 'int', 0), 'open', path);
}
