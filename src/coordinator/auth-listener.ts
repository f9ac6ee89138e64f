/**
 * The auth socket: where a worker proves to the coordinator which process it is, because
 * ZeroMQ gives no peer credentials. The coordinator listens on `<rundir>/auth.sock`
 * (AF_UNIX SEQPACKET); each worker connects once and sends one ToAuth message: an
 * AuthProof (its dumped pid and the nonce its HELLO will carry) or, when it failed before
 * its HELLO, the failure. The sender's pid and uid are the kernel's (SO_PEERCRED, taken
 * at connect(2)), never the message's. A worker's sendmsg returns only once the message
 * is queued on our side of the connection, and it sends its HELLO after that, so when a
 * HELLO comes its proof is already here: `proofOf` drains the socket synchronously
 * before it answers "no proof".
 */
import { authSocketPath } from '../protocol/paths.js';
import {
  listenSeqpacket,
  acceptSeqpacket,
  peerCred,
  peerPidfd,
  pidfsHandleIno,
  recvFds,
  closeQuiet,
} from '../../native/index.js';
import { decodeAuth } from '../protocol/wire.js';
import type { Failure } from '../protocol/messages.js';
import { watchReadable, type Watch } from '../sys/readiness.js';

interface Peer {
  pid: number;
  uid: number;
  /** pidfs ino of the connecting process (SO_PEERPIDFD): unique for the boot. */
  ino: bigint;
}

/** Who connected: SO_PEERCRED's pid and uid, SO_PEERPIDFD's process identity. */
function peerOf(fd: number): Peer | undefined {
  try {
    const { pid, uid } = peerCred(fd);
    const pidfd = peerPidfd(fd);
    try {
      return { pid, uid, ino: pidfsHandleIno(pidfd) };
    } finally {
      closeQuiet(pidfd);
    }
  } catch {
    return undefined; // gone already, or no SO_PEERPIDFD: proves nothing
  }
}

/**
 * A process (kernel pid, and its pidfs ino: which process, even after pid reuse) said it
 * plays dumped task `dumped` with HELLO nonce `nonce`.
 */
export interface Proof {
  pid: number;
  ino: bigint;
  dumped: number;
  nonce: Uint8Array;
}

export interface AuthHandlers {
  /** The process `pid` (kernel) says it plays `dumped` and failed before its HELLO. */
  onStartupFailed(pid: number, dumped: number, failure: Failure): void;
}

/** A ToAuth message is small: a proof is ~25 bytes, a failure a few hundred. */
const MAX_MESSAGE = 4096;
/**
 * How long an accepted connection may stay silent before it is closed. A worker sends
 * right after connecting, but on a loaded machine it may wait seconds for a CPU in
 * between: with 2 s, a 129-task bench restore at load 85 lost a worker's proof (EPIPE).
 */
const SILENT_CONNECTION_MS = 10_000;

export class AuthListener {
  /** By kernel pid; a later process with that pid (another ino) replaces the proof. */
  private readonly proofs = new Map<number, Proof>();
  /** Accepted connections whose message has not come yet: fd -> (watch, peer). */
  private readonly waiting = new Map<number, { watch: Watch; peer: Peer; timer: NodeJS.Timeout }>();
  private closed = false;
  private readonly listening: Watch;

  private constructor(
    private readonly listenFd: number,
    private readonly handlers: AuthHandlers,
  ) {
    this.listening = watchReadable(listenFd, () => this.drain());
  }

  static listen(rundir: string, handlers: AuthHandlers): AuthListener {
    return new AuthListener(listenSeqpacket(authSocketPath(rundir), 4096), handlers);
  }

  /** The proof of the process `pid`, reading first whatever is queued. */
  proofOf(pid: number): Proof | undefined {
    if (!this.proofs.has(pid)) this.drain();
    return this.proofs.get(pid);
  }

  /** Accepts every pending connection and reads every queued message. Never blocks. */
  drain(): void {
    if (this.closed) return;
    for (const [fd, w] of this.waiting) this.readOne(fd, w.peer);
    for (let fd = this.accept(); fd !== null; fd = this.accept()) {
      const peer = peerOf(fd);
      // Another uid cannot reach the 0700 run directory; root could: not a worker.
      if (peer === undefined || peer.uid !== process.getuid!()) closeQuiet(fd);
      else this.readOne(fd, peer);
    }
  }

  private accept(): number | null {
    try {
      return acceptSeqpacket(this.listenFd);
    } catch {
      return null; // EMFILE and the like: the HELLO is refused for want of a proof
    }
  }

  /** Reads the one message of connection `fd` from `peer`, or waits for it. */
  private readOne(fd: number, peer: Peer): void {
    let bytes: Buffer | undefined;
    try {
      const msg = recvFds(fd, MAX_MESSAGE, 0);
      if (msg === null) return this.wait(fd, peer);
      bytes = msg.payload;
    } catch {
      // a message with fds (MSG_CTRUNC) or a broken connection: not a worker's
    }
    this.forget(fd);
    if (bytes !== undefined && bytes.length > 0) this.take(peer, bytes);
  }

  private wait(fd: number, peer: Peer): void {
    if (this.waiting.has(fd)) return;
    // A worker sends right after connecting: a connection silent for long is not one,
    // and must not keep our fds.
    const timer = setTimeout(() => this.forget(fd), SILENT_CONNECTION_MS).unref();
    this.waiting.set(fd, { peer, timer, watch: watchReadable(fd, () => this.readOne(fd, peer)) });
  }

  private forget(fd: number): void {
    const w = this.waiting.get(fd);
    w?.watch.stop();
    if (w) clearTimeout(w.timer);
    this.waiting.delete(fd);
    closeQuiet(fd);
  }

  private take({ pid, ino }: Peer, bytes: Buffer): void {
    let msg: ReturnType<typeof decodeAuth>;
    try {
      msg = decodeAuth(bytes);
    } catch {
      return; // garbage: proves nothing
    }
    if (msg.type === 'AUTH_PROOF') {
      const had = this.proofs.get(pid);
      if (had === undefined || had.ino !== ino) {
        this.proofs.set(pid, { pid, ino, dumped: msg.pid, nonce: msg.nonce });
      }
      return;
    }
    this.handlers.onStartupFailed(pid, msg.pid, msg.failure);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.listening.stop();
    for (const fd of [...this.waiting.keys()]) this.forget(fd);
    closeQuiet(this.listenFd);
  }
}
