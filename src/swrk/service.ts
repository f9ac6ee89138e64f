/**
 * `pidfd-cr swrk FD`: a service for hosts in any language, as `criu swrk`. One
 * SOCK_SEQPACKET socket the host passed (fd inherited); one protobuf Request per message
 * in, one Response per message out (proto/swrk.proto). A restore asked to notify sends a
 * NOTIFY response at each hook and waits for the host's NOTIFY answer (bounded by the
 * restore's timeout). A host that goes away stops what runs (the tree is taken down) and
 * ends the service; a request that cannot be decoded gets an error response.
 * I/O: recvmsg/sendmsg through native (never net.Socket), readiness by libuv poll.
 */
import { closeQuiet, recvFds, sendFds, setCloexec } from '../../native/index.js';
import { pidfdcr } from '../../gen/pb.js';
import { EXIT_CODES, PcrError, SyscallError, isErrno } from '../errors.js';
import { textOf } from '../text.js';
import { runCheck } from '../check/index.js';
import { watchReadable, type Watch } from '../sys/readiness.js';
import { dumpToDir } from '../dump/index.js';
import { toolVersion } from '../dump/host.js';
import { readImage } from '../image/store.js';
import { restoreImage } from '../restore/restore-image.js';
import type { HookContext, RestoreHooks } from '../coordinator/settings.js';
import { HOOK_NAMES, type HookName } from '../machines/coordinator.js';
import type { PidMap } from '../protocol/messages.js';
import type { Difference } from '../verify/compare.js';

const pb = pidfdcr.swrk;
const T = pb.ReqType;

/** criu's action names for the hooks (as --action-script's CRTOOLS_SCRIPT_ACTION). */
export const NOTIFY_SCRIPTS: Record<HookName, string> = {
  treeBuilt: 'post-setup-namespaces',
  verified: 'post-restore',
  beforeHandoff: 'pre-resume',
  beforeTeardown: 'pre-teardown',
};

/** The largest request or response (one SEQPACKET message). */
export const MAX_MESSAGE = 65536;

type Resp = pidfdcr.swrk.IResponse;

export function errorResponse(type: number, err: unknown): Resp {
  const e =
    err instanceof PcrError
      ? err
      : new PcrError('PCR_ERR_INTERNAL', `internal error: ${textOf(err)}`, { cause: err });
  return {
    type,
    success: false,
    error: {
      code: e.code,
      exitStatus: EXIT_CODES[e.code],
      message: e.message,
      ...(e instanceof SyscallError
        ? { syscall: e.syscall, errnum: e.errno, errnoName: e.errnoName }
        : {}),
    },
  };
}

const pairs = (p: readonly { dumped: number; restored: number }[]) =>
  p.map((x) => ({ dumped: x.dumped, restored: x.restored }));
const diffs = (d: readonly Difference[] | undefined) =>
  (d ?? []).map((x) => ({ kind: x.kind, pid: x.pid, fd: x.fd ?? -1, message: x.message }));

/** Decodes one request; a PcrError (PCR_ERR_USAGE) naming what is wrong otherwise. */
export function decodeRequest(bytes: Uint8Array): pidfdcr.swrk.Request {
  let req: pidfdcr.swrk.Request;
  try {
    req = pb.Request.decode(bytes);
  } catch (err) {
    throw new PcrError('PCR_ERR_USAGE', `malformed request: ${textOf((err as Error).message)}`);
  }
  if (!Object.values(T).includes(req.type) || req.type === T.REQ_UNSET)
    throw new PcrError('PCR_ERR_USAGE', `malformed request: unknown type ${req.type}`);
  return req;
}

/** CHECK: the report of `pidfd-cr check` (src/check), one line per feature plus its JSON. */
async function checkKernel(): Promise<Resp> {
  const report = await runCheck();
  const features = report.features.map(
    (f) =>
      `${f.command} ${f.id}: ${f.works ? 'yes' : `no (${f.failed.join(', ')})`}` +
      (f.needed ? '' : ' [optional]'),
  );
  return {
    type: T.CHECK,
    success: true,
    check: { ok: report.ok, features, reportJson: JSON.stringify(report) },
    version: toolVersion(),
  };
}

interface Running {
  kind: 'dump' | 'restore';
  controller: AbortController;
  /** The RESTORE response went out (a held tree): the end answers TEARDOWN. */
  answered: boolean;
  held: boolean;
  teardownAsked: boolean;
}

export class SwrkService {
  private watch: Watch | undefined;
  private running: Running | undefined;
  private waitingAnswer: ((answer: { abort?: string }) => void) | undefined;
  private hostGone = false;
  private closed = false;
  private resolveEnd!: () => void;
  /** Resolves once the host went away and nothing runs any more. */
  readonly ended = new Promise<void>((r) => (this.resolveEnd = r));

  constructor(private readonly fd: number) {}

  start(): void {
    // Inherited without close-on-exec: no process we start (workers, temp processes) keeps it.
    setCloexec(this.fd, true);
    this.watch = watchReadable(this.fd, () => this.readAll());
  }

  private readAll(): void {
    while (!this.hostGone) {
      let msg: ReturnType<typeof recvFds>;
      try {
        msg = recvFds(this.fd, MAX_MESSAGE, 8);
      } catch (err) {
        // A message too long or with more fds than we take was dropped by the kernel: an
        // error response, go on. Any other failure of the socket ends the service.
        if (!isErrno(err, 'EMSGSIZE') && !isErrno(err, 'ENOBUFS')) return this.lostHost();
        this.send(errorResponse(T.REQ_UNSET, err));
        continue;
      }
      if (msg === null) return;
      msg.fds.forEach(closeQuiet); // requests carry no fds
      if (msg.payload.length === 0) return this.lostHost();
      this.onRequest(msg.payload);
    }
  }

  private send(r: Resp): void {
    if (this.hostGone) return;
    const bytes = Buffer.from(pb.Response.encode(r).finish());
    try {
      sendFds(this.fd, bytes, []); // never empty: every response has a type or an error
    } catch {
      this.lostHost(); // EPIPE, ECONNRESET: the host is gone
    }
  }

  private onRequest(bytes: Buffer): void {
    let req: pidfdcr.swrk.Request;
    try {
      req = decodeRequest(bytes);
    } catch (err) {
      return this.send(errorResponse(T.REQ_UNSET, err));
    }
    try {
      this.dispatch(req);
    } catch (err) {
      this.send(errorResponse(req.type, err));
    }
  }

  private dispatch(req: pidfdcr.swrk.Request): void {
    switch (req.type) {
      case T.VERSION:
        return this.send({ type: T.VERSION, success: true, version: toolVersion() });
      case T.CHECK:
        void checkKernel().then(
          (resp) => this.send(resp),
          (err: unknown) => this.send(errorResponse(T.CHECK, err)),
        );
        return;
      case T.NOTIFY:
        return this.answer(req);
      case T.TEARDOWN:
        return this.teardown();
      case T.DUMP:
      case T.RESTORE:
        if (this.running)
          throw new PcrError('PCR_ERR_USAGE', `busy: a ${this.running.kind} is in progress`);
        return req.type === T.DUMP ? this.dump(req) : this.restore(req);
    }
  }

  private answer(req: pidfdcr.swrk.Request): void {
    const waiting = this.waitingAnswer;
    if (!waiting) throw new PcrError('PCR_ERR_USAGE', 'no notification is waiting for an answer');
    if (!req.notifySuccess && req.notifyAbort === '')
      throw new PcrError('PCR_ERR_USAGE', 'a NOTIFY answer needs notify_success or notify_abort');
    this.waitingAnswer = undefined;
    waiting(req.notifySuccess ? {} : { abort: req.notifyAbort });
  }

  private teardown(): void {
    const r = this.running;
    if (!r || !r.held || r.teardownAsked)
      throw new PcrError('PCR_ERR_USAGE', 'no held tree to take down');
    r.teardownAsked = true;
    r.controller.abort('TEARDOWN requested');
  }

  private dump(req: pidfdcr.swrk.Request): void {
    const d = req.dump;
    if (!d || !d.pid || !d.imagesDir)
      throw new PcrError('PCR_ERR_USAGE', 'DUMP needs dump.pid and dump.images_dir');
    const running: Running = {
      kind: 'dump',
      controller: new AbortController(),
      answered: false,
      held: false,
      teardownAsked: false,
    };
    this.running = running;
    void dumpToDir(d.pid, d.imagesDir, {
      force: d.force === true,
      leaveStopped: d.leaveStopped === true,
    })
      .then(
        ({ image }) =>
          this.send({
            type: T.DUMP,
            success: true,
            dump: {
              tasks: image.tasks.length,
              pidfds: image.tasks.reduce((n, t) => n + t.fds.length, 0),
            },
          }),
        (err: unknown) => this.send(errorResponse(T.DUMP, err)),
      )
      .finally(() => this.finished());
  }

  /** Sends a notification and waits for its answer (the hook's signal ends the wait). */
  private notify(hook: HookName, c: HookContext): Promise<void | { abort: string }> {
    // No host to ask: the restore is already stopping (its tree is taken down).
    if (this.hostGone) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const stop = () => {
        this.waitingAnswer = undefined;
        reject(new PcrError('PCR_ERR_RESTORE', 'stopped waiting for the host'));
      };
      c.signal.addEventListener('abort', stop, { once: true });
      this.waitingAnswer = (a) => {
        c.signal.removeEventListener('abort', stop);
        resolve(a.abort === undefined ? undefined : { abort: `the host: ${a.abort}` });
      };
      this.send({
        type: T.NOTIFY,
        success: true,
        notify: {
          script: NOTIFY_SCRIPTS[hook],
          hook,
          rootPid: c.rootPid,
          pids: pairs(c.pidMap.pids),
          tids: pairs(c.pidMap.tids),
          differences: diffs(c.differences),
        },
      });
    });
  }

  private restoreResponse(pidMap: PidMap, differences: Difference[], held: boolean): Resp {
    return {
      type: T.RESTORE,
      success: true,
      restore: {
        ok: differences.length === 0,
        pids: pairs(pidMap.pids),
        tids: pairs(pidMap.tids),
        differences: diffs(differences),
        held,
      },
    };
  }

  private restore(req: pidfdcr.swrk.Request): void {
    const o = req.restore;
    if (!o || !o.imagesDir) throw new PcrError('PCR_ERR_USAGE', 'RESTORE needs restore.images_dir');
    const image = readImage(o.imagesDir);
    const running: Running = {
      kind: 'restore',
      controller: new AbortController(),
      answered: false,
      held: false,
      teardownAsked: false,
    };
    const hooks: RestoreHooks = {};
    if (o.notify) for (const h of HOOK_NAMES) hooks[h] = (c) => this.notify(h, c);
    if (o.hold) {
      const notifyHandoff = hooks.beforeHandoff;
      hooks.beforeHandoff = async (c) => {
        const r = await notifyHandoff?.(c);
        if (r) return r;
        // The tree is held from here: answer RESTORE now, TEARDOWN ends it.
        running.held = true;
        running.answered = true;
        this.send(this.restoreResponse(c.pidMap, c.differences ?? [], true));
      };
    }
    this.running = running;
    void restoreImage(image, {
      hold: o.hold === true,
      ...(o.timeoutMs ? { timeoutMs: o.timeoutMs } : {}),
      externalDead: o.externalDead === true,
      signal: running.controller.signal,
      adoptOrphans: true,
      hooks,
    })
      .then(
        (result) =>
          this.send(
            running.answered
              ? { type: T.TEARDOWN, success: true }
              : this.restoreResponse(result.pidMap, result.differences, false),
          ),
        (err: unknown) => this.send(errorResponse(running.answered ? T.TEARDOWN : T.RESTORE, err)),
      )
      .finally(() => this.finished());
  }

  private finished(): void {
    this.running = undefined;
    this.waitingAnswer = undefined;
    if (this.hostGone) this.close();
  }

  /** Ends the service as if the host had gone (SIGTERM, SIGINT). */
  stop(): void {
    this.lostHost();
  }

  /** The host closed its end (or cannot be written to): stop what runs, then end. */
  private lostHost(): void {
    if (this.hostGone) return;
    this.hostGone = true;
    this.watch?.stop();
    this.watch = undefined;
    if (this.running) this.running.controller.abort('the swrk host went away');
    else this.close();
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    this.watch?.stop();
    closeQuiet(this.fd);
    this.resolveEnd();
  }
}

/** Serves requests on `fd` until the host closes its end (or `signal`) and nothing runs. */
export async function serveSwrk(fd: number, signal?: AbortSignal): Promise<void> {
  const s = new SwrkService(fd);
  s.start();
  signal?.addEventListener('abort', () => s.stop(), { once: true });
  await s.ended;
}
