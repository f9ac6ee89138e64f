/**
 * The builder's side of the control channel: a SEQPACKET listener in a private 0700
 * directory, one TaskLink per task after its hello (checked against SO_PEERCRED), and
 * request/reply with fds attached. A task that hangs up fails its pending requests at
 * once; every wait has a time limit.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  acceptSeqpacket,
  closeQuiet,
  listenSeqpacket,
  peerCred,
  uvPoll,
  type UvPollHandle,
} from '../../native/index.js';
import { PcrError } from '../errors.js';
import { PacketChannel } from './channel.js';
import type { Request, TaskMessage, TaskOp } from './protocol.js';

export interface Reply {
  pid?: number;
  tids?: number[];
  /** fds attached to the reply (SCM_RIGHTS); the caller closes them. */
  fds: number[];
}

function withTimeout<T>(what: string, ms: number, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new PcrError('PCR_ERR_TIMEOUT', `example: ${what} took over ${ms} ms`)),
      ms,
    );
  });
  return Promise.race([p, limit]).finally(() => clearTimeout(timer));
}

interface Pending {
  resolve(r: Reply): void;
  reject(e: Error): void;
}

/** One connected task. */
export class TaskLink {
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closedWith: Error | undefined;

  constructor(
    readonly name: string,
    private readonly channel: PacketChannel,
    private readonly timeoutMs: number,
  ) {}

  request(body: TaskOp, fds: readonly number[] = []): Promise<Reply> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    const id = this.nextId++;
    const reply = new Promise<Reply>((resolve, reject) =>
      this.pending.set(id, { resolve, reject }),
    );
    this.channel.send({ type: 'request', id, body } satisfies Request, fds);
    return withTimeout(`step ${body.op} in task '${this.name}'`, this.timeoutMs, reply).finally(
      () => this.pending.delete(id),
    );
  }

  onMessage(m: TaskMessage, fds: number[]): void {
    const p = m.type === 'hello' ? undefined : this.pending.get(m.id);
    if (!p) {
      fds.forEach(closeQuiet);
      return;
    }
    if (m.type === 'done') {
      const r: Reply = { fds };
      if (m.pid !== undefined) r.pid = m.pid;
      if (m.tids !== undefined) r.tids = m.tids;
      p.resolve(r);
    } else if (m.type === 'failed') {
      fds.forEach(closeQuiet);
      p.reject(new PcrError('PCR_ERR_INTERNAL', `example task '${this.name}': ${m.error}`));
    }
  }

  onClose(err?: unknown): void {
    const why = err instanceof Error ? `: ${err.message}` : '';
    this.closedWith = new PcrError('PCR_ERR_INTERNAL', `example task '${this.name}' hung up${why}`);
    for (const p of this.pending.values()) p.reject(this.closedWith);
  }

  /** Let the process exit even while this link is open. */
  unref(): void {
    this.channel.ref(false);
  }

  close(): void {
    this.channel.close();
  }
}

export class ControlServer {
  private readonly dir = mkdtempSync(join(tmpdir(), 'pidfd-cr-example-'));
  readonly socketPath = join(this.dir, 'ctl');
  private listenFd: number;
  private poll: UvPollHandle | undefined;
  private readonly helloWaiters = new Map<
    string,
    { resolve: (pid: number, link: TaskLink) => void; reject: (err: Error) => void }
  >();
  private readonly links: TaskLink[] = [];

  constructor(private readonly timeoutMs: number) {
    this.listenFd = listenSeqpacket(this.socketPath);
    this.poll = uvPoll(this.listenFd, { readable: true }, () => this.acceptAll());
  }

  /** Resolves when task `name` connects and says hello: its pid and its link. */
  waitHello(name: string): Promise<{ pid: number; link: TaskLink }> {
    return withTimeout(
      `hello from task '${name}'`,
      this.timeoutMs,
      new Promise((resolve, reject) =>
        this.helloWaiters.set(name, { resolve: (pid, link) => resolve({ pid, link }), reject }),
      ),
    );
  }

  /** No more connections: closes the listener and removes the directory. */
  stopListening(): void {
    this.poll?.close();
    this.poll = undefined;
    if (this.listenFd >= 0) closeQuiet(this.listenFd);
    this.listenFd = -1;
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Closes everything; a hello still awaited fails at once (its timer goes with it). */
  close(): void {
    this.stopListening();
    for (const l of this.links) l.close();
    const closed = new PcrError('PCR_ERR_INTERNAL', 'example: control server closed');
    for (const w of this.helloWaiters.values()) w.reject(closed);
    this.helloWaiters.clear();
  }

  private acceptAll(): void {
    for (;;) {
      const fd = acceptSeqpacket(this.listenFd);
      if (fd === null) return;
      const peerPid = peerCred(fd).pid;
      let link: TaskLink | undefined;
      const channel: PacketChannel = new PacketChannel(
        fd,
        (msg, fds) => {
          const m = msg as TaskMessage;
          if (link) link.onMessage(m, fds);
          else link = this.hello(peerPid, channel, m, fds);
        },
        (err) => link?.onClose(err),
      );
    }
  }

  /** The first message must be a hello from the expected task, sent by that very pid. */
  private hello(peerPid: number, channel: PacketChannel, m: TaskMessage, fds: number[]) {
    fds.forEach(closeQuiet);
    const waiter = m.type === 'hello' ? this.helloWaiters.get(m.name) : undefined;
    if (m.type !== 'hello' || !waiter || m.pid !== peerPid) {
      channel.close();
      return undefined;
    }
    this.helloWaiters.delete(m.name);
    const link = new TaskLink(m.name, channel, this.timeoutMs);
    this.links.push(link);
    waiter.resolve(m.pid, link);
    return link;
  }
}
