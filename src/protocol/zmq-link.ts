/**
 * The coordinator's end of the control link: one ZeroMQ ROUTER bound at
 * `ipc://<rundir>/ctl` (a fresh 0700 directory per restore: a second bind on an ipc path
 * silently takes it over). Each worker is one DEALER on it whose routing id is its dumped
 * pid as a decimal string; workers speak ZMTP themselves (zmtp-dealer.ts) and load no
 * zeromq. One frame per message (the protobuf bytes); `linger: 0` so closing never waits
 * for unsent messages. Sends are chained: zeromq.js allows only one pending send per
 * socket. `sendTimeout: 0`: a send that cannot be queued at once fails at once. Without
 * it, a ROUTER send (mandatory) to a worker that just died can wait for ever (its pipe is
 * not writable and never will be), and so would closing the socket.
 */
import { controlPath } from './paths.js';
import { Router } from 'zeromq';
import { PcrError } from '../errors.js';

export const controlAddress = (rundir: string): string => `ipc://${controlPath(rundir)}`;

/** A serial queue of sends on one socket; errors go to `onError`. */
class SendQueue {
  private tail: Promise<void> = Promise.resolve();
  constructor(private readonly onError: (err: Error) => void) {}
  push(send: () => Promise<void>): Promise<void> {
    this.tail = this.tail.then(send).catch((err: Error) => this.onError(err));
    return this.tail;
  }
  drain(): Promise<void> {
    return this.tail;
  }
}

export interface RouterHandlers {
  onFrame(routingId: string, frame: Buffer): void;
  onError(err: Error): void;
  /** A send found no connected peer with this routing id (EHOSTUNREACH): it left. */
  onUnreachable(routingId: string): void;
}

export class ControlRouter {
  private readonly sends: SendQueue;
  private closed = false;

  private constructor(
    private readonly socket: Router,
    readonly address: string,
    private readonly handlers: RouterHandlers,
  ) {
    this.sends = new SendQueue(handlers.onError);
    void this.receiveLoop();
  }

  static async bind(rundir: string, handlers: RouterHandlers): Promise<ControlRouter> {
    // mandatory: a send to a worker that is not connected fails instead of vanishing.
    const socket = new Router({ linger: 0, mandatory: true, handover: false, sendTimeout: 0 });
    const address = controlAddress(rundir);
    try {
      await socket.bind(address);
    } catch (err) {
      socket.close();
      throw new PcrError('PCR_ERR_RESTORE', `cannot bind ${address}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    return new ControlRouter(socket, address, handlers);
  }

  private async receiveLoop(): Promise<void> {
    try {
      for await (const [id, frame] of this.socket) {
        if (id === undefined || frame === undefined) continue;
        this.handlers.onFrame(id.toString(), frame);
      }
    } catch (err) {
      if (!this.closed) this.handlers.onError(err as Error);
    }
  }

  send(routingId: string, frame: Uint8Array): Promise<void> {
    return this.sends.push(async () => {
      try {
        await this.socket.send([routingId, frame]);
      } catch (err) {
        // A worker that died (or closed its DEALER) is not a failure of the link.
        if ((err as { code?: string }).code !== 'EHOSTUNREACH') throw err;
        this.handlers.onUnreachable(routingId);
      }
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.sends.drain();
    this.socket.close();
  }
}
