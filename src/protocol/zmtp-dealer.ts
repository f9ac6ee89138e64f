/**
 * The worker's end of the control link: a ZMTP 3.0 DEALER (the codec is zmtp.ts) on an
 * AF_UNIX stream socket of its own (native/stream.ts, koffi), woken by a libuv poll handle
 * (sys/readiness.ts). The coordinator keeps its zeromq ROUTER (zmq-link.ts) and sees an
 * ordinary DEALER; the worker loads no zeromq (its addon, its JS, libzmq's I/O and reaper
 * threads: ≈ 4 ms of CPU per worker, docs/restore.md "Performance").
 *
 * As zeromq's DEALER did: the routing id is sent in READY (`Identity`), one frame per
 * message, messages sent before the handshake is done are queued, close() lets what is
 * queued go for at most LINGER_MS. Unlike it, a broken link is reported, never retried:
 * the peer gone (end of file, EPIPE, ECONNRESET) or breaking ZMTP (a ZmtpError naming what
 * was wrong) goes to onError once, and the link is closed.
 */
import {
  streamSocket,
  connectStream,
  recvSome,
  sendSome,
  closeQuiet,
  errnoName,
} from '../../native/index.js';
import { watchFd, type FdWatch, type Readiness } from '../sys/readiness.js';
import {
  ZmtpDecoder,
  encodeGreeting,
  encodeReady,
  encodeFrame,
  encodeCommand,
  type ZmtpEvent,
} from './zmtp.js';
import { controlPath } from './paths.js';
import { PcrError, SyscallError } from '../errors.js';

export interface ZmtpDealerHandlers {
  /** One whole message from the peer, its frames in order. */
  onMessage(frames: Buffer[]): void;
  onError(err: Error): void;
}

/** close() waits at most this long for queued messages to leave (zeromq's linger). */
export const LINGER_MS = 200;
/** A connect that found the listener's backlog full (EAGAIN) is tried again after this. */
const CONNECT_RETRY_MS = 5;
const READ_BYTES = 64 * 1024;
/** Queued frames are written together, up to this many bytes per send(2). */
const WRITE_BATCH_BYTES = 64 * 1024;

interface Outgoing {
  bytes: Buffer;
  /** Called once the bytes are in the kernel (or the link is gone). */
  sent: () => void;
}

const nothing = (): void => {};

export class ZmtpDealer {
  private readonly fd: number;
  private watch: FdWatch | undefined;
  private readonly decoder = new ZmtpDecoder();
  private state: 'connecting' | 'handshake' | 'open' | 'done' = 'connecting';
  /** Bytes for the wire in order: our greeting and READY first, then message frames. */
  private readonly wire: Outgoing[] = [];
  /** Messages sent before the peer's READY. */
  private held: Outgoing[] = [];
  private flushQueued = false;
  private retry: NodeJS.Timeout | undefined;
  private closing: { done: Promise<void>; resolve: () => void; timer: NodeJS.Timeout } | undefined;
  private readBuffer: Buffer | undefined;

  /**
   * Connects at once: a path over 107 bytes, no listener (ENOENT, ECONNREFUSED) or no
   * socket throws a SyscallError here. A full backlog is retried every few ms.
   */
  constructor(
    readonly path: string,
    readonly routingId: string,
    private readonly handlers: ZmtpDealerHandlers,
  ) {
    this.fd = streamSocket();
    const hello = encodeReady({ 'Socket-Type': 'DEALER', Identity: routingId });
    this.wire.push({ bytes: Buffer.concat([encodeGreeting(), hello]), sent: nothing });
    try {
      this.connect();
    } catch (err) {
      closeQuiet(this.fd);
      this.state = 'done';
      throw err;
    }
  }

  /** Queues one single-frame message; resolves once it is written (or the link is gone). */
  send(payload: Uint8Array): Promise<void> {
    if (this.state === 'done' || this.closing) return Promise.resolve();
    return new Promise((sent) => {
      const out = { bytes: encodeFrame(payload), sent };
      if (this.state !== 'open') return void this.held.push(out);
      this.wire.push(out);
      // Everything sent in this turn of the event loop goes out in one send(2).
      if (this.flushQueued) return;
      this.flushQueued = true;
      queueMicrotask(() => {
        this.flushQueued = false;
        this.flush();
      });
    });
  }

  /** Lets queued messages go (at most LINGER_MS), then closes the socket. */
  close(): Promise<void> {
    if (this.closing) return this.closing.done;
    if (this.state === 'done') return Promise.resolve();
    let resolve!: () => void;
    const done = new Promise<void>((r) => (resolve = r));
    this.closing = { done, resolve, timer: setTimeout(() => this.finish(), LINGER_MS) };
    if (this.wire.length === 0 && this.held.length === 0) this.finish();
    else this.flush();
    return done;
  }

  private connect(): void {
    this.retry = undefined;
    if (!connectStream(this.fd, this.path)) {
      this.retry = setTimeout(() => this.reconnect(), CONNECT_RETRY_MS);
      return;
    }
    this.state = 'handshake';
    this.watch = watchFd(this.fd, (r) => this.onReady(r));
    this.flush();
  }

  private reconnect(): void {
    try {
      this.connect();
    } catch (err) {
      this.fail(err as Error);
    }
  }

  private onReady(r: Readiness): void {
    if (this.state === 'done') return;
    if (r.status < 0) {
      // libuv reports POLLERR as EBADF and stops watching. What the peer sent is still
      // delivered, then recv gives the socket's own error (ECONNRESET: the peer closed
      // with bytes of ours unread).
      this.receive();
      return this.fail(new SyscallError('poll', -r.status, errnoName(-r.status), this.path));
    }
    if (r.writable) this.flush();
    if (r.readable || r.disconnect) this.receive();
  }

  private receive(): void {
    const buffer = (this.readBuffer ??= Buffer.allocUnsafe(READ_BYTES));
    for (;;) {
      let n: number | null;
      let events: ZmtpEvent[];
      try {
        n = recvSome(this.fd, buffer);
        if (n === null) return;
        if (n === 0)
          throw new PcrError('PCR_ERR_RESTORE', `${this.path}: the peer closed the connection`);
        // A copy: the decoder keeps views of what it was given.
        events = this.decoder.push(Buffer.from(buffer.subarray(0, n)));
      } catch (err) {
        return this.fail(err as Error);
      }
      for (const event of events) {
        this.onEvent(event);
        if (this.state === 'done') return;
      }
      if (n < buffer.length) return;
    }
  }

  private onEvent(event: ZmtpEvent): void {
    switch (event.type) {
      case 'greeting':
        return;
      case 'ready':
        this.state = 'open';
        this.wire.push(...this.held);
        this.held = [];
        return this.flush();
      case 'message':
        if (this.closing) return;
        try {
          this.handlers.onMessage(event.frames);
        } catch (err) {
          this.fail(err as Error);
        }
        return;
      case 'command':
        // ZMTP 3.1's heartbeat (libzmq sends it only when asked to): PONG with its context.
        if (event.name === 'PING')
          this.wire.push({ bytes: encodeCommand('PONG', event.data.subarray(2)), sent: nothing });
        return this.flush();
    }
  }

  private flush(): void {
    if (this.state === 'connecting' || this.state === 'done') return;
    while (this.wire.length > 0) {
      let bytes = this.wire[0]!.bytes;
      if (this.wire.length > 1 && bytes.length < WRITE_BATCH_BYTES) {
        const batch: Buffer[] = [];
        let size = 0;
        for (const out of this.wire) {
          if (size > 0 && size + out.bytes.length > WRITE_BATCH_BYTES) break;
          batch.push(out.bytes);
          size += out.bytes.length;
        }
        if (batch.length > 1) bytes = Buffer.concat(batch, size);
      }
      let n: number;
      try {
        n = sendSome(this.fd, bytes) ?? 0;
      } catch (err) {
        return this.fail(err as Error);
      }
      for (let left = n; left > 0;) {
        const head = this.wire[0]!;
        if (left < head.bytes.length) {
          head.bytes = head.bytes.subarray(left);
          break;
        }
        left -= head.bytes.length;
        this.wire.shift();
        head.sent();
      }
      if (n < bytes.length) return this.watch?.wantWritable(true);
    }
    this.watch?.wantWritable(false);
    if (this.closing && this.held.length === 0) this.finish();
  }

  /** The link is broken: closed at once, reported once (not while closing). */
  private fail(err: Error): void {
    if (this.state === 'done') return;
    const closing = this.closing !== undefined;
    this.finish();
    if (!closing) this.handlers.onError(err);
  }

  private finish(): void {
    if (this.state !== 'done') {
      this.state = 'done';
      if (this.retry !== undefined) clearTimeout(this.retry);
      this.watch?.stop();
      this.watch = undefined;
      closeQuiet(this.fd);
    }
    for (const out of [...this.wire.splice(0), ...this.held.splice(0)]) out.sent();
    if (this.closing) {
      clearTimeout(this.closing.timer);
      this.closing.resolve();
    }
  }
}

export interface DealerHandlers {
  onFrame(frame: Buffer): void;
  onError(err: Error): void;
}

/**
 * A worker's control link: a ZmtpDealer on the coordinator's ROUTER at `<rundir>/ctl`
 * whose routing id is the worker's dumped pid; one frame per message.
 */
export class ControlDealer extends ZmtpDealer {
  constructor(rundir: string, routingId: string, handlers: DealerHandlers) {
    super(controlPath(rundir), routingId, {
      onMessage: (frames) => handlers.onFrame(frames[0]!),
      onError: (err) => handlers.onError(err),
    });
  }
}
