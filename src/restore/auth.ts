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
import { join } from 'node:path';
import {
  listenSeqpacket,
  acceptSeqpacket,
  peerCred,
  recvFds,
  closeQuiet,
} from '../../native/index.js';
import { decodeAuth } from '../plan/wire.js';
import type { Failure } from '../plan/messages.js';
import { watchReadable, type Watch } from '../actors/readiness.js';

export const authSocketPath = (rundir: string): string => join(rundir, 'auth.sock');

/** A process (kernel pid) said it plays dumped task `dumped` with HELLO nonce `nonce`. */
export interface Proof {
  pid: number;
  dumped: number;
  nonce: Uint8Array;
}

export interface AuthHandlers {
  /** The process `pid` (kernel) says it plays `dumped` and failed before its HELLO. */
  onStartupFailed(pid: number, dumped: number, failure: Failure): void;
}

/** A ToAuth message is small: a proof is ~25 bytes, a failure a few hundred. */
const MAX_MESSAGE = 4096;

export class AuthListener {
  /** By kernel pid; the first proof of a pid stands. */
  private readonly proofs = new Map<number, Proof>();
  /** Accepted connections whose message has not come yet: fd -> (watch, peer pid). */
  private readonly waiting = new Map<number, { watch: Watch; pid: number }>();
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
    for (const [fd, w] of this.waiting) this.readOne(fd, w.pid);
    for (let fd = this.accept(); fd !== null; fd = this.accept()) {
      let peer: { pid: number; uid: number };
      try {
        peer = peerCred(fd);
      } catch {
        closeQuiet(fd);
        continue;
      }
      // Another uid cannot reach the 0700 run directory; root could: not a worker.
      if (peer.uid !== process.getuid!()) closeQuiet(fd);
      else this.readOne(fd, peer.pid);
    }
  }

  private accept(): number | null {
    try {
      return acceptSeqpacket(this.listenFd);
    } catch {
      return null; // EMFILE and the like: the HELLO is refused for want of a proof
    }
  }

  /** Reads the one message of connection `fd` from kernel pid `pid`, or waits for it. */
  private readOne(fd: number, pid: number): void {
    let bytes: Buffer | undefined;
    try {
      const msg = recvFds(fd, MAX_MESSAGE, 0);
      if (msg === null) return this.wait(fd, pid);
      bytes = msg.payload;
    } catch {
      // a message with fds (MSG_CTRUNC) or a broken connection: not a worker's
    }
    this.forget(fd);
    if (bytes !== undefined && bytes.length > 0) this.take(pid, bytes);
  }

  private wait(fd: number, pid: number): void {
    if (this.waiting.has(fd)) return;
    this.waiting.set(fd, { pid, watch: watchReadable(fd, () => this.readOne(fd, pid)) });
  }

  private forget(fd: number): void {
    this.waiting.get(fd)?.watch.stop();
    this.waiting.delete(fd);
    closeQuiet(fd);
  }

  private take(pid: number, bytes: Buffer): void {
    let msg: ReturnType<typeof decodeAuth>;
    try {
      msg = decodeAuth(bytes);
    } catch {
      return; // garbage: proves nothing
    }
    if (msg.type === 'AUTH_PROOF') {
      if (!this.proofs.has(pid)) this.proofs.set(pid, { pid, dumped: msg.pid, nonce: msg.nonce });
      return;
    }
    this.handlers.onStartupFailed(pid, msg.pid, msg.failure);
  }

  close(): void {
    this.listening.stop();
    for (const fd of [...this.waiting.keys()]) this.forget(fd);
    closeQuiet(this.listenFd);
  }
}
