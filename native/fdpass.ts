/**
 * Unix SEQPACKET sockets and SCM_RIGHTS. Structs are packed by hand into Buffers
 * (msghdr 56 bytes, iovec 16, cmsghdr 16 + 4·n): simpler and faster than koffi structs.
 * Never wrap these sockets in net.Socket: libuv would read the bytes and the kernel
 * would discard the attached fds.
 */
import { libc, check, addressOf, errnoName, fail } from './libc.js';
import koffi from 'koffi';
import { PcrError, SyscallError } from '../src/errors.js';

export const AF_UNIX = 1;
const SOCK_SEQPACKET = 5;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_PEERCRED = 17;
const SO_PEERPIDFD = 77;
const SCM_RIGHTS = 1;
export const MSG_DONTWAIT = 0x40;
const MSG_CTRUNC = 0x8;
const MSG_TRUNC = 0x20;
export const MSG_NOSIGNAL = 0x4000;
const MSG_CMSG_CLOEXEC = 0x40000000;
/** The kernel refuses more than 253 fds in one SCM_RIGHTS message (SCM_MAX_FD). */
export const MAX_FDS_PER_MESSAGE = 253;
const EAGAIN = 11;

/** A `struct sockaddr_un` for `path`; ENAMETOOLONG (named `syscall`) past 107 bytes. */
export function sockaddrUn(path: string, syscall = 'bind'): Buffer {
  const p = Buffer.from(path);
  if (p.length > 107) throw new SyscallError(syscall, 36, 'ENAMETOOLONG', path);
  const sa = Buffer.alloc(110);
  sa.writeUInt16LE(AF_UNIX, 0);
  p.copy(sa, 2);
  return sa;
}

export function seqpacketPair(): [number, number] {
  const sv = Buffer.alloc(8);
  check(libc.socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 'socketpair');
  return [sv.readInt32LE(0), sv.readInt32LE(4)];
}

/** A non-blocking listening SEQPACKET socket bound at `path`. */
export function listenSeqpacket(path: string, backlog = 128): number {
  const fd = check(
    libc.socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0),
    'socket',
  );
  const sa = sockaddrUn(path);
  if (libc.bind(fd, sa, sa.length) === -1 || libc.listen(fd, backlog) === -1) {
    const e = koffi.errno();
    libc.close(fd);
    throw new SyscallError('bind/listen', e, errnoName(e), path);
  }
  return fd;
}

/** Accepts one connection (non-blocking, cloexec); null when none is pending. */
export function acceptSeqpacket(listenFd: number): number | null {
  const fd = libc.accept4(listenFd, null, null, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (fd === -1) {
    if (koffi.errno() === EAGAIN) return null;
    fail('accept4', `listening fd ${listenFd}`);
  }
  return fd;
}

/** A blocking SEQPACKET connection to `path` (Unix connects complete at once). */
export function connectSeqpacket(path: string): number {
  const fd = check(libc.socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0), 'socket');
  const sa = sockaddrUn(path, 'connect');
  if (libc.connect(fd, sa, sa.length) === -1) {
    const e = koffi.errno();
    libc.close(fd);
    throw new SyscallError('connect', e, errnoName(e), path);
  }
  return fd;
}

export interface PeerCred {
  pid: number;
  uid: number;
  gid: number;
}

const SO_TYPE = 3;

/** SO_TYPE of a socket fd (SOCK_SEQPACKET is 5); a SyscallError (ENOTSOCK, EBADF) otherwise. */
export function socketType(fd: number): number {
  return getsockoptInt(fd, SO_TYPE, 'getsockopt(SO_TYPE)');
}

/** An int-valued SOL_SOCKET option; a SyscallError named `syscall` on failure. */
function getsockoptInt(fd: number, option: number, syscall: string): number {
  const out = Buffer.alloc(4);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(4, 0);
  check(libc.getsockopt(fd, SOL_SOCKET, option, out, len), syscall);
  return out.readInt32LE(0);
}
export const SOCKET_SEQPACKET = SOCK_SEQPACKET;

/** SO_PEERCRED: who is at the other end of a connected Unix socket. */
export function peerCred(fd: number): PeerCred {
  const cred = Buffer.alloc(12);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(12, 0);
  check(libc.getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cred, len), 'getsockopt(SO_PEERCRED)');
  return { pid: cred.readInt32LE(0), uid: cred.readUInt32LE(4), gid: cred.readUInt32LE(8) };
}

/**
 * SO_PEERPIDFD (Linux 6.5): a pidfd for the process that connected (taken at connect(2),
 * safe against pid reuse). Close it.
 */
export function peerPidfd(fd: number): number {
  return getsockoptInt(fd, SO_PEERPIDFD, 'getsockopt(SO_PEERPIDFD)');
}

const cmsgSpace = (n: number): number => 16 + ((4 * n + 7) & ~7);

/**
 * sendmsg with `fds` attached as SCM_RIGHTS and `payload` (≥ 1 byte) as data. The fds
 * stay open in the sender. At most MAX_FDS_PER_MESSAGE fds per call.
 */
export function sendFds(sock: number, payload: Buffer, fds: readonly number[]): void {
  if (payload.length === 0)
    throw new PcrError('PCR_ERR_INTERNAL', 'SCM_RIGHTS needs at least one payload byte');
  if (fds.length > MAX_FDS_PER_MESSAGE)
    throw new PcrError('PCR_ERR_INTERNAL', `at most ${MAX_FDS_PER_MESSAGE} fds`);
  const iov = Buffer.alloc(16);
  iov.writeBigUInt64LE(addressOf(payload), 0);
  iov.writeBigUInt64LE(BigInt(payload.length), 8);
  const msg = Buffer.alloc(56);
  msg.writeBigUInt64LE(addressOf(iov), 16);
  msg.writeBigUInt64LE(1n, 24);
  let control: Buffer | undefined;
  if (fds.length > 0) {
    control = Buffer.alloc(cmsgSpace(fds.length));
    control.writeBigUInt64LE(BigInt(16 + 4 * fds.length), 0);
    control.writeInt32LE(SOL_SOCKET, 8);
    control.writeInt32LE(SCM_RIGHTS, 12);
    fds.forEach((fd, i) => control!.writeInt32LE(fd, 16 + 4 * i));
    msg.writeBigUInt64LE(addressOf(control), 32);
    msg.writeBigUInt64LE(BigInt(control.length), 40);
  }
  const n = check(
    libc.sendmsg(sock, msg, MSG_NOSIGNAL),
    'sendmsg',
    `${fds.length} fds on socket ${sock}`,
  );
  if (n !== payload.length)
    throw new PcrError('PCR_ERR_SYSCALL', `sendmsg sent ${n} of ${payload.length} bytes`);
}

export interface Received {
  payload: Buffer;
  /** Received fds, all close-on-exec (MSG_CMSG_CLOEXEC). */
  fds: number[];
}

/**
 * One non-blocking recvmsg: null when nothing is queued (EAGAIN); a zero-length payload
 * means the peer closed. MSG_CTRUNC (fds dropped by the kernel) and MSG_TRUNC (a
 * SEQPACKET message longer than `maxPayload`, its tail dropped) are errors.
 */
export function recvFds(
  sock: number,
  maxPayload = 65536,
  maxFds = MAX_FDS_PER_MESSAGE,
): Received | null {
  const data = Buffer.alloc(maxPayload);
  const iov = Buffer.alloc(16);
  iov.writeBigUInt64LE(addressOf(data), 0);
  iov.writeBigUInt64LE(BigInt(maxPayload), 8);
  const control = Buffer.alloc(cmsgSpace(maxFds));
  const msg = Buffer.alloc(56);
  msg.writeBigUInt64LE(addressOf(iov), 16);
  msg.writeBigUInt64LE(1n, 24);
  msg.writeBigUInt64LE(addressOf(control), 32);
  msg.writeBigUInt64LE(BigInt(control.length), 40);
  const n = Number(libc.recvmsg(sock, msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC));
  if (n === -1) {
    if (koffi.errno() === EAGAIN) return null;
    fail('recvmsg', `socket ${sock}`);
  }
  const fds = parseRights(control, Number(msg.readBigUInt64LE(40)));
  if (msg.readInt32LE(48) & MSG_CTRUNC) {
    fds.forEach((fd) => libc.close(fd));
    throw new SyscallError('recvmsg', 105, 'ENOBUFS', 'MSG_CTRUNC: fds were dropped by the kernel');
  }
  if (msg.readInt32LE(48) & MSG_TRUNC) {
    fds.forEach((fd) => libc.close(fd));
    throw new SyscallError(
      'recvmsg',
      90,
      'EMSGSIZE',
      `MSG_TRUNC: a message over ${maxPayload} bytes`,
    );
  }
  return { payload: data.subarray(0, n), fds };
}

function parseRights(control: Buffer, controlLen: number): number[] {
  const fds: number[] = [];
  let off = 0;
  while (off + 16 <= controlLen) {
    const len = Number(control.readBigUInt64LE(off));
    if (len < 16) break;
    if (
      control.readInt32LE(off + 8) === SOL_SOCKET &&
      control.readInt32LE(off + 12) === SCM_RIGHTS
    ) {
      for (let p = off + 16; p + 4 <= off + len; p += 4) fds.push(control.readInt32LE(p));
    }
    off += (len + 7) & ~7;
  }
  return fds;
}
