/**
 * Moving pidfds between workers: SCM_RIGHTS over AF_UNIX SEQPACKET. Each worker listens
 * at `<rundir>/fd-<dumped pid>.sock`; a sender connects, sends its fds in messages of at
 * most 253 (the kernel's SCM_MAX_FD), each with a payload naming the file id of every fd
 * in order, and closes. The receiver accepts only peers whose SO_PEERCRED pid is one it
 * expects, and drains each connection with recvmsg(MSG_DONTWAIT | MSG_CMSG_CLOEXEC) when
 * libuv says it is readable. Never net.Socket: libuv would read the bytes and the kernel
 * would drop the attached fds.
 */
import {
  listenSeqpacket,
  acceptSeqpacket,
  connectSeqpacket,
  peerCred,
  sendFds,
  recvFds,
  closeQuiet,
  MAX_FDS_PER_MESSAGE,
} from '../../native/index.js';
import { PcrError } from '../errors.js';
import { watchReadable, type Watch } from './readiness.js';

export interface FdMessage {
  /** At least one byte (SCM_RIGHTS needs data): here the FdTransfer naming the files. */
  payload: Buffer;
  /** At most 253; received ones are close-on-exec and owned by the receiver. */
  fds: number[];
}

export interface FdListenerOptions {
  /** An already bound, listening, non-blocking socket (else one is bound at `path`). */
  listenFd?: number;
  /** SO_PEERCRED check: pids allowed to send (restored workers). */
  isExpectedPeer(pid: number): boolean;
  onMessage(msg: FdMessage, peerPid: number): void;
  onError(err: Error): void;
}

export interface FdListener {
  readonly path: string;
  close(): void;
}

export function listenForFds(path: string, opts: FdListenerOptions): FdListener {
  const listenFd = opts.listenFd ?? listenSeqpacket(path);
  const conns = new Map<number, Watch>();
  const dropConn = (fd: number): void => {
    conns.get(fd)?.stop();
    conns.delete(fd);
    closeQuiet(fd);
  };
  const drain = (fd: number, peerPid: number): void => {
    try {
      for (let msg = recvFds(fd); msg !== null; msg = recvFds(fd)) {
        if (msg.payload.length === 0) return dropConn(fd);
        opts.onMessage(msg, peerPid);
      }
    } catch (err) {
      dropConn(fd);
      opts.onError(err as Error);
    }
  };
  const acceptAll = (): void => {
    try {
      for (let fd = acceptSeqpacket(listenFd); fd !== null; fd = acceptSeqpacket(listenFd)) {
        const cred = peerCred(fd);
        const peer = cred.pid;
        if (cred.uid !== process.getuid!() || !opts.isExpectedPeer(peer)) {
          closeQuiet(fd);
          opts.onError(new PcrError('PCR_ERR_RESTORE', `${path}: refused fds from pid ${peer}`));
          continue;
        }
        const conn = fd;
        conns.set(
          conn,
          watchReadable(conn, () => drain(conn, peer)),
        );
      }
    } catch (err) {
      opts.onError(err as Error);
    }
  };
  const listening = watchReadable(listenFd, acceptAll);
  return {
    path,
    close() {
      listening.stop();
      [...conns.keys()].forEach(dropConn);
      closeQuiet(listenFd);
    },
  };
}

/**
 * SO_PEERCRED of a connected socket: the listener's credentials at listen(2) time. Its
 * uid must be ours and, if given, its pid the expected one.
 */
function checkPeer(sock: number, path: string, expectedPid: number | undefined): void {
  const peer = peerCred(sock);
  if (peer.uid !== process.getuid!() || (expectedPid !== undefined && peer.pid !== expectedPid))
    throw new PcrError(
      'PCR_ERR_RESTORE',
      `${path}: listener is pid ${peer.pid} uid ${peer.uid}, expected pid ${expectedPid ?? 'any'} uid ${process.getuid!()}`,
    );
}

/**
 * Sends `messages` to the listener at `path` over one connection, then closes it (queued
 * messages stay readable). A Unix connect completes at once (or waits in the backlog);
 * sendmsg blocks only if the receiver's queue is full (messages here are small).
 */
export function sendFdMessages(
  path: string,
  messages: readonly FdMessage[],
  expectedPeer?: number,
): void {
  const sock = connectSeqpacket(path);
  try {
    checkPeer(sock, path, expectedPeer);
    for (const m of messages) {
      if (m.fds.length > MAX_FDS_PER_MESSAGE)
        throw new PcrError(
          'PCR_ERR_INTERNAL',
          `more than ${MAX_FDS_PER_MESSAGE} fds in one message`,
        );
      sendFds(sock, m.payload, m.fds);
    }
  } finally {
    closeQuiet(sock);
  }
}
