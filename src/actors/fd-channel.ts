/**
 * Moving pidfds between workers: SCM_RIGHTS over AF_UNIX SEQPACKET. Each worker listens
 * at `<rundir>/fd-<dumped pid>.sock`; a sender connects, sends its fds in messages of at
 * most 253 (the kernel's SCM_MAX_FD), each with a payload naming the file id of every fd
 * in order, and closes. The receiver accepts only peers whose SO_PEERCRED pid is one it
 * expects, and drains each connection with recvmsg(MSG_DONTWAIT | MSG_CMSG_CLOEXEC) when
 * libuv says it is readable. Never net.Socket: libuv would read the bytes and the kernel
 * would drop the attached fds.
 */
import { join } from 'node:path';
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

export const fdSocketPath = (rundir: string, dumpedPid: number): string =>
  join(rundir, `fd-${dumpedPid}.sock`);

/** The payload of one SCM_RIGHTS message: which file each attached fd is. */
export interface FdPayloadCodec {
  encode(fileIds: readonly number[]): Buffer;
  decode(payload: Buffer): number[];
}

export interface ReceivedFile {
  fileId: number;
  /** Close-on-exec; the receiver owns it. */
  fd: number;
}

export interface FdListenerOptions {
  codec: FdPayloadCodec;
  /** SO_PEERCRED check: pids allowed to send (restored workers). */
  isExpectedPeer(pid: number): boolean;
  onFiles(files: ReceivedFile[], peerPid: number): void;
  onError(err: Error): void;
}

export interface FdListener {
  readonly path: string;
  close(): void;
}

export function listenForFds(path: string, opts: FdListenerOptions): FdListener {
  const listenFd = listenSeqpacket(path);
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
        opts.onFiles(pairFiles(opts.codec, msg.payload, msg.fds, peerPid), peerPid);
      }
    } catch (err) {
      dropConn(fd);
      opts.onError(err as Error);
    }
  };
  const acceptAll = (): void => {
    try {
      for (let fd = acceptSeqpacket(listenFd); fd !== null; fd = acceptSeqpacket(listenFd)) {
        const peer = peerCred(fd).pid;
        if (!opts.isExpectedPeer(peer)) {
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

function pairFiles(
  codec: FdPayloadCodec,
  payload: Buffer,
  fds: number[],
  peerPid: number,
): ReceivedFile[] {
  const ids = codec.decode(payload);
  if (ids.length !== fds.length) {
    fds.forEach(closeQuiet);
    throw new PcrError(
      'PCR_ERR_RESTORE',
      `fds from pid ${peerPid}: payload names ${ids.length} files but ${fds.length} fds came`,
    );
  }
  return ids.map((fileId, i) => ({ fileId, fd: fds[i]! }));
}

/**
 * Sends `files` to the listener at `path`, in chunks of at most 253 fds. Our fds stay
 * open. A Unix connect completes at once; sendmsg blocks only if the receiver's queue is
 * full (messages here are small).
 */
export function sendFiles(
  path: string,
  files: readonly ReceivedFile[],
  codec: FdPayloadCodec,
): void {
  const sock = connectSeqpacket(path);
  try {
    for (let i = 0; i < files.length; i += MAX_FDS_PER_MESSAGE) {
      const chunk = files.slice(i, i + MAX_FDS_PER_MESSAGE);
      sendFds(
        sock,
        codec.encode(chunk.map((f) => f.fileId)),
        chunk.map((f) => f.fd),
      );
    }
  } finally {
    closeQuiet(sock);
  }
}

/** Payload codec used until the protocol's FdTransfer message is wired: JSON file ids. */
export const jsonFdPayload: FdPayloadCodec = {
  encode: (ids) => Buffer.from(JSON.stringify(ids)),
  decode: (buf) => {
    const ids: unknown = JSON.parse(buf.toString());
    if (!Array.isArray(ids) || !ids.every(Number.isInteger)) throw new Error('bad fd payload');
    return ids as number[];
  },
};
