/**
 * Non-blocking AF_UNIX SOCK_STREAM client sockets: the worker's end of the control link
 * (src/protocol/zmtp-dealer.ts speaks ZMTP over it). Reads and writes never block and
 * never raise SIGPIPE; readiness is the caller's (a libuv poll handle, src/sys/readiness.ts).
 * Never wrap these fds in net.Socket: node:net alone costs a worker ≈ 2.3 ms to load.
 */
import { libc, check, errnoName } from './libc.js';
import {
  sockaddrUn,
  AF_UNIX,
  SOCK_NONBLOCK,
  SOCK_CLOEXEC,
  MSG_DONTWAIT,
  MSG_NOSIGNAL,
} from './fdpass.js';
import koffi from 'koffi';
import { SyscallError } from '../src/errors.js';

const SOCK_STREAM = 1;
const EAGAIN = 11;
const EINTR = 4;

/** A fresh non-blocking, close-on-exec AF_UNIX stream socket. */
export function streamSocket(): number {
  return check(libc.socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), 'socket');
}

/**
 * connect(2) of a non-blocking Unix stream socket to `path`: true once connected (a Unix
 * connect completes at once), false when the listener's backlog is full (EAGAIN: try
 * again later, nothing to poll for). Anything else (ENOENT, ECONNREFUSED, ENAMETOOLONG
 * past 107 bytes) is a SyscallError naming the path.
 */
export function connectStream(fd: number, path: string): boolean {
  const sa = sockaddrUn(path, 'connect');
  if (libc.connect(fd, sa, sa.length) === 0) return true;
  const e = koffi.errno();
  if (e === EAGAIN || e === EINTR) return false;
  throw new SyscallError('connect', e, errnoName(e), path);
}

/**
 * One non-blocking recv into `buf`: the byte count, 0 at end of file (the peer closed),
 * null when nothing is queued. ECONNRESET and the like are SyscallErrors.
 */
export function recvSome(fd: number, buf: Buffer): number | null {
  const n = Number(libc.recv(fd, buf, buf.length, MSG_DONTWAIT));
  if (n >= 0) return n;
  const e = koffi.errno();
  if (e === EAGAIN || e === EINTR) return null;
  throw new SyscallError('recv', e, errnoName(e), `stream socket ${fd}`);
}

/**
 * One non-blocking send of `buf` (or of its head): the byte count, null when the socket
 * buffer is full. A peer that is gone is EPIPE (a SyscallError, no SIGPIPE).
 */
export function sendSome(fd: number, buf: Buffer): number | null {
  const n = Number(libc.send(fd, buf, buf.length, MSG_DONTWAIT | MSG_NOSIGNAL));
  if (n >= 0) return n;
  const e = koffi.errno();
  if (e === EAGAIN || e === EINTR) return null;
  throw new SyscallError('send', e, errnoName(e), `stream socket ${fd}`);
}
