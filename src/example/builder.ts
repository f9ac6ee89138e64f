/**
 * buildTree: makes a REAL process tree holding REAL pidfds from a TreeSpec, and says
 * what a correct dump of it must contain. Used by the tests and by `pidfd-cr demo`.
 *
 * The calling process becomes a child subreaper (PR_SET_CHILD_SUBREAPER) so that it can
 * reap every task in destroy(), whatever order they die in. It listens on a SEQPACKET
 * socket in a private 0700 directory; every task connects, says hello (checked with
 * SO_PEERCRED) and runs the steps of the plan (plan.ts) it is sent. The control sockets
 * are not pidfds, so they never appear in a dump; the builder's own pidfds to the tasks
 * live in the builder, which is outside the tree.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  acceptSeqpacket,
  closeQuiet,
  listenSeqpacket,
  peerCred,
  pidfdOpen,
  pidfdSendSignal,
  prctl,
  PR_SET_CHILD_SUBREAPER,
  spawn,
  uvPoll,
  waitPidfd,
  WEXITED,
  WNOHANG,
  type UvPollHandle,
} from '../../native/index.js';
import { isErrno, PcrError } from '../errors.js';
import { readPidfd } from '../procfs/index.js';
import { PacketChannel } from './channel.js';
import { expectTree, type ExpectedTree } from './expected.js';
import { planTree, type Plan, type PlannedStep, type Step } from './plan.js';
import type { Request, TaskMessage, TaskOp } from './protocol.js';
import type { TreeSpec } from './spec.js';
import { makeZombie, spawnTask } from './spawn-task.js';

export interface BuildOptions {
  /** Give up on any single step after this long (default 30 s). */
  stepTimeoutMs?: number;
}

export interface BuiltTree {
  spec: TreeSpec;
  rootPid: number;
  /** Pid of every task and external, by name. */
  pids: ReadonlyMap<string, number>;
  /** Tids of the extra threads of each task, by index. */
  threadTids: ReadonlyMap<string, readonly number[]>;
  /** Pids of the tasks of the tree (live and zombie), in pre-order. */
  taskPids: readonly number[];
  /** What a correct dump of this tree must say (compare with describeImage). */
  expected: ExpectedTree;
  /** Kills and reaps every task and external; removes the control directory. Idempotent. */
  destroy(): Promise<void>;
}

interface Peer {
  pid: number;
  /** The builder's own pidfd to it, to kill and reap it. */
  pidfd: number;
  channel?: PacketChannel;
}

const SIGKILL = 9;

/** Builds the tree; on any failure everything started so far is destroyed first. */
export async function buildTree(spec: TreeSpec, opts: BuildOptions = {}): Promise<BuiltTree> {
  const plan = planTree(spec); // refuses a bad spec before any process starts
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  const b = new Builder(plan, opts.stepTimeoutMs ?? 30_000);
  try {
    b.startExternals();
    await b.run();
    b.stopListening();
    return b.result(spec);
  } catch (err) {
    await b.destroy();
    throw err;
  }
}

class Builder {
  private readonly dir = mkdtempSync(join(tmpdir(), 'pidfd-cr-example-'));
  readonly socketPath = join(this.dir, 'ctl');
  private listenFd: number;
  private listenPoll: UvPollHandle | undefined;
  private readonly peers = new Map<string, Peer>();
  private readonly externals = new Map<string, Peer>();
  private readonly threadTids = new Map<string, number[]>();
  private readonly helloWaiters = new Map<string, (pid: number, ch: PacketChannel) => void>();
  private readonly replies = new Map<number, (m: TaskMessage, fds: number[]) => void>();
  private nextId = 1;
  private destroyed = false;

  constructor(
    private readonly plan: Plan,
    private readonly timeoutMs: number,
  ) {
    this.listenFd = listenSeqpacket(this.socketPath);
    this.listenPoll = uvPoll(this.listenFd, { readable: true }, () => this.acceptAll());
  }

  startExternals(): void {
    for (const e of this.plan.externals) {
      const pid = e.zombie
        ? makeZombie(e.zombie.status)
        : spawn({ path: '/bin/sleep', argv: ['sleep', 'infinity'], closeFrom: 3 });
      this.externals.set(e.name, { pid, pidfd: pidfdOpen(pid) });
    }
  }

  /** Runs every step as soon as what it needs exists; independent steps run together. */
  async run(): Promise<void> {
    const facts = new Set<string>();
    let pending: PlannedStep[] = [...this.plan.steps];
    const running = new Set<Promise<void>>();
    while (pending.length > 0 || running.size > 0) {
      const ready = pending.filter((s) => s.needs.every((n) => facts.has(n)));
      pending = pending.filter((s) => !ready.includes(s));
      for (const s of ready) {
        const p: Promise<void> = this.exec(s.step).then(() => {
          s.makes.forEach((m) => facts.add(m));
          running.delete(p);
        });
        p.catch(() => {}); // observed through Promise.race below
        running.add(p);
      }
      if (running.size === 0) throw new PcrError('PCR_ERR_INTERNAL', 'example plan is stuck');
      await Promise.race(running);
    }
  }

  private async exec(step: Step): Promise<void> {
    switch (step.op) {
      case 'spawn':
        return this.spawnTask(step);
      case 'zombie': {
        const { pid } = await this.request(step.by, { op: 'zombie', status: step.status });
        this.peers.set(step.task, { pid: pid!, pidfd: pidfdOpen(pid!) });
        return;
      }
      case 'threads': {
        const { tids } = await this.request(step.by, { op: 'threads', count: step.count });
        this.threadTids.set(step.by, tids!);
        return;
      }
      case 'open': {
        const { target } = step;
        const pid =
          'task' in target
            ? this.pidOf(target.task)
            : 'external' in target
              ? this.pidOf(target.external)
              : this.tidOf(target.thread.task, target.thread.index);
        const op: TaskOp = { op: 'open', fd: step.fd, pid, openFlags: step.openFlags };
        if (step.accessMode !== undefined) op.accessMode = step.accessMode;
        await this.request(step.by, op);
        return;
      }
      case 'send': {
        const got = await this.request(step.by, { op: 'give', fd: step.fd });
        try {
          await this.request(step.to.task, { op: 'take', fd: step.to.fd }, got.fds);
        } finally {
          got.fds.forEach(closeQuiet);
        }
        return;
      }
      case 'dead': {
        const { by: _by, ...op } = step;
        await this.request(step.by, op);
        return;
      }
      case 'deadThread':
        await this.request(step.by, { op: 'deadThread', fd: step.fd, openFlags: step.openFlags });
        return;
      case 'dup':
        await this.request(step.by, { op: 'dup', fd: step.fd, from: step.from });
        return;
      case 'finalize':
        await this.request(step.by, { op: 'finalize', cloexec: step.cloexec });
        return;
    }
  }

  private async spawnTask(step: Extract<Step, { op: 'spawn' }>): Promise<void> {
    const hello = this.waitHello(step.task);
    let pid: number;
    if (step.by === undefined) {
      pid = spawnTask({
        name: step.task,
        socketPath: this.socketPath,
        inherit: step.inherit,
        reserve: step.reserve,
      });
      this.peers.set(step.task, { pid, pidfd: pidfdOpen(pid) });
    } else {
      const op: TaskOp = {
        op: 'spawn',
        child: step.task,
        inherit: step.inherit,
        reserve: step.reserve,
      };
      pid = (await this.request(step.by, op)).pid!;
    }
    const [helloPid, channel] = await hello;
    if (helloPid !== pid) {
      throw new PcrError(
        'PCR_ERR_INTERNAL',
        `task '${step.task}' said hello as ${helloPid}, spawned as ${pid}`,
      );
    }
    const peer = this.peers.get(step.task) ?? { pid, pidfd: pidfdOpen(pid) };
    peer.channel = channel;
    this.peers.set(step.task, peer);
  }

  private pidOf(name: string): number {
    const p = this.peers.get(name) ?? this.externals.get(name);
    if (!p) throw new PcrError('PCR_ERR_INTERNAL', `example: '${name}' is not started`);
    return p.pid;
  }

  private tidOf(task: string, index: number): number {
    const tid = this.threadTids.get(task)?.[index];
    if (tid === undefined)
      throw new PcrError('PCR_ERR_INTERNAL', `example: no thread ${index} in '${task}'`);
    return tid;
  }

  private withTimeout<T>(what: string, p: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const limit = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new PcrError('PCR_ERR_TIMEOUT', `example: ${what} took over ${this.timeoutMs} ms`),
          ),
        this.timeoutMs,
      );
    });
    return Promise.race([p, limit]).finally(() => clearTimeout(timer));
  }

  private waitHello(name: string): Promise<[number, PacketChannel]> {
    return this.withTimeout(
      `hello from task '${name}'`,
      new Promise((resolve) => this.helloWaiters.set(name, (pid, ch) => resolve([pid, ch]))),
    );
  }

  private request(
    task: string,
    body: TaskOp,
    fds: number[] = [],
  ): Promise<{ pid?: number; tids?: number[]; fds: number[] }> {
    const channel = this.peers.get(task)?.channel;
    if (!channel)
      throw new PcrError('PCR_ERR_INTERNAL', `example: task '${task}' is not connected`);
    const id = this.nextId++;
    const reply = new Promise<{ pid?: number; tids?: number[]; fds: number[] }>(
      (resolve, reject) => {
        this.replies.set(id, (m, got) => {
          if (m.type === 'done')
            resolve({
              ...(m.pid === undefined ? {} : { pid: m.pid }),
              ...(m.tids ? { tids: m.tids } : {}),
              fds: got,
            });
          else if (m.type === 'failed')
            reject(
              new PcrError(
                'PCR_ERR_INTERNAL',
                `example task '${task}': ${body.op} failed: ${m.error}`,
              ),
            );
        });
      },
    );
    channel.send({ type: 'request', id, body } satisfies Request, fds);
    return this.withTimeout(`step ${body.op} in task '${task}'`, reply).finally(() =>
      this.replies.delete(id),
    );
  }

  private acceptAll(): void {
    for (;;) {
      const fd = acceptSeqpacket(this.listenFd);
      if (fd === null) return;
      const peerPid = peerCred(fd).pid;
      const channel: PacketChannel = new PacketChannel(
        fd,
        (msg, fds) => this.onMessage(peerPid, channel, msg as TaskMessage, fds),
        () => {},
      );
    }
  }

  private onMessage(peerPid: number, channel: PacketChannel, m: TaskMessage, fds: number[]): void {
    if (m.type === 'hello') {
      const waiter = this.helloWaiters.get(m.name);
      if (!waiter || m.pid !== peerPid) {
        fds.forEach(closeQuiet);
        channel.close();
        return;
      }
      this.helloWaiters.delete(m.name);
      waiter(m.pid, channel);
      return;
    }
    const handler = this.replies.get(m.id);
    if (handler) handler(m, fds);
    else fds.forEach(closeQuiet);
  }

  stopListening(): void {
    this.listenPoll?.close();
    this.listenPoll = undefined;
    if (this.listenFd >= 0) closeQuiet(this.listenFd);
    this.listenFd = -1;
    rmSync(this.dir, { recursive: true, force: true });
    for (const p of this.peers.values()) p.channel?.ref(false);
  }

  result(spec: TreeSpec): BuiltTree {
    const pids = new Map<string, number>();
    for (const [n, p] of [...this.peers, ...this.externals]) pids.set(n, p.pid);
    const expected = expectTree(this.plan, {
      builderPid: process.pid,
      pids,
      threadTids: this.threadTids,
    });
    return {
      spec,
      rootPid: expected.rootPid,
      pids,
      threadTids: this.threadTids,
      taskPids: this.plan.tasks.map((t) => pids.get(t.name)!),
      expected,
      destroy: () => this.destroy(),
    };
  }

  /** SIGKILL everything, then reap each one as it becomes our child (subreaper). */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    this.stopListening();
    const all = [...this.peers.values(), ...this.externals.values()];
    for (const p of all) {
      p.channel?.close();
      try {
        pidfdSendSignal(p.pidfd, SIGKILL);
      } catch (err) {
        if (!isErrno(err, 'ESRCH')) throw err;
      }
    }
    await reapAll(all.map((p) => p.pidfd));
  }
}

/** Reaps each pidfd's process once it is our child; gives up after 10 s. Closes the pidfds. */
async function reapAll(pidfds: number[]): Promise<void> {
  let left = pidfds;
  for (let round = 0; left.length > 0; round++) {
    left = left.filter((fd) => !tryReap(fd));
    if (left.length === 0) break;
    if (round > 5000) {
      left.forEach(closeQuiet);
      throw new PcrError('PCR_ERR_TIMEOUT', `example: ${left.length} processes were not reaped`);
    }
    await sleep(2);
  }
}

/** True when the process is reaped (by us now, or by someone else before); closes the pidfd then. */
function tryReap(pidfd: number): boolean {
  try {
    if (waitPidfd(pidfd, WEXITED | WNOHANG) === null) return false;
  } catch (err) {
    if (!isErrno(err, 'ECHILD')) throw err;
    // Not our child (yet): its parent has not died, or someone else reaped it.
    if (readPidfd(process.pid, pidfd)?.pid !== -1) return false;
  }
  closeQuiet(pidfd);
  return true;
}
