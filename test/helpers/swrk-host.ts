/**
 * A test host for `pidfd-cr swrk FD`: a SEQPACKET socket pair, the service started with
 * one end as its fd 3, protobuf requests sent and responses awaited (bounded).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { closeQuiet, recvFds, sendFds, seqpacketPair } from '../../native/index.js';
import { whenReadable } from '../../src/sys/readiness.js';
import { pidfdcr } from '../../gen/pb.js';
import { CLI } from '../fixtures/dump-helpers.js';

export const pb = pidfdcr.swrk;

interface Pair {
  dumped: number;
  restored: number;
}
interface Diff {
  kind: string;
  pid: number;
  fd: number;
  message: string;
}
/** A decoded response with every field present (proto3 defaults filled in). */
export interface Response {
  type: number;
  success: boolean;
  error?: {
    code: string;
    exitStatus: number;
    message: string;
    syscall: string;
    errnum: number;
    errnoName: string;
  };
  dump?: { tasks: number; pidfds: number };
  restore?: { ok: boolean; pids: Pair[]; tids: Pair[]; differences: Diff[]; held: boolean };
  notify?: {
    script: string;
    hook: string;
    rootPid: number;
    pids: Pair[];
    tids: Pair[];
    differences: Diff[];
  };
  check?: { ok: boolean; features: string[]; reportJson: string };
  version: string;
}

export function decodeResponse(bytes: Uint8Array): Response {
  const m = pb.Response.decode(bytes);
  return pb.Response.toObject(m, { defaults: true, arrays: true, enums: Number }) as Response;
}

export class SwrkHost {
  readonly child: ChildProcess;
  stderr = '';
  private fd: number;
  private queue: Response[] = [];
  readonly exited: Promise<[number | null, string | null]>;

  constructor(env: NodeJS.ProcessEnv = {}) {
    const [ours, theirs] = seqpacketPair();
    this.fd = ours;
    this.child = spawn(process.execPath, [CLI, 'swrk', '3'], {
      stdio: ['ignore', 'ignore', 'pipe', theirs],
      env: { ...process.env, ...env },
    });
    closeQuiet(theirs);
    this.child.stderr!.setEncoding('utf8').on('data', (d: string) => (this.stderr += d));
    this.exited = once(this.child, 'exit') as Promise<[number | null, string | null]>;
  }

  sendRaw(bytes: Uint8Array): void {
    sendFds(this.fd, Buffer.from(bytes), []);
  }

  send(req: pidfdcr.swrk.IRequest): void {
    this.sendRaw(pb.Request.encode(req).finish());
  }

  /** The next response, or a failure after `limitMs`. */
  async next(limitMs = 30_000): Promise<Response> {
    const deadline = Date.now() + limitMs;
    for (;;) {
      const queued = this.queue.shift();
      if (queued) return queued;
      const msg = recvFds(this.fd);
      if (msg !== null) {
        if (msg.payload.length === 0) throw new Error('the service closed its end');
        this.queue.push(decodeResponse(msg.payload));
        continue;
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no response within ${limitMs} ms`);
      await Promise.race([whenReadable(this.fd, AbortSignal.timeout(left)).catch(() => {})]);
    }
  }

  /** Sends `req` and returns the next response. */
  async ask(req: pidfdcr.swrk.IRequest, limitMs?: number): Promise<Response> {
    this.send(req);
    return this.next(limitMs);
  }

  /** Closes our end: the service sees its host gone. */
  close(): void {
    if (this.fd >= 0) closeQuiet(this.fd);
    this.fd = -1;
  }

  kill(): void {
    this.close();
    this.child.kill('SIGKILL');
  }
}
