/**
 * One JSON message per SEQPACKET packet, with fds attached over SCM_RIGHTS, read
 * without blocking the event loop (a libuv poll handle, then recvmsg until EAGAIN).
 * Used by the example builder and its task processes; never wrapped in net.Socket,
 * which would eat the fds.
 */
import { closeQuiet, recvFds, sendFds, uvPoll, type UvPollHandle } from '../../native/index.js';

export type PacketHandler = (msg: unknown, fds: number[]) => void;

export class PacketChannel {
  private handle: UvPollHandle | undefined;
  private closed = false;

  constructor(
    readonly fd: number,
    private readonly onPacket: PacketHandler,
    private readonly onClose: (err?: unknown) => void,
  ) {
    this.handle = uvPoll(fd, { readable: true, disconnect: true }, () => this.drain());
  }

  send(msg: unknown, fds: readonly number[] = []): void {
    sendFds(this.fd, Buffer.from(JSON.stringify(msg)), fds);
  }

  /** Stops polling and closes the socket; the peer sees end of file. */
  close(err?: unknown): void {
    if (this.closed) return;
    this.closed = true;
    this.handle?.close();
    this.handle = undefined;
    closeQuiet(this.fd);
    this.onClose(err);
  }

  /** Keep (true) or not (false) the process alive for this channel. */
  ref(on: boolean): void {
    if (on) this.handle?.ref();
    else this.handle?.unref();
  }

  private drain(): void {
    try {
      for (;;) {
        if (this.closed) return;
        const got = recvFds(this.fd);
        if (got === null) return;
        if (got.payload.length === 0) {
          this.close();
          return;
        }
        this.onPacket(JSON.parse(got.payload.toString('utf8')), got.fds);
      }
    } catch (err) {
      this.close(err);
    }
  }
}
