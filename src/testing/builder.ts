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
import {
  closeQuiet,
  pidfdOpen,
  pidfdSendSignal,
  prctl,
  PR_SET_CHILD_SUBREAPER,
  spawn,
} from '../../native/index.js';
import { isErrno, PcrError } from '../errors.js';
import { ControlServer, type Reply, type TaskLink } from './control.js';
import { expectTree, type ExpectedTree } from './expected.js';
import { planTree, type Plan, type PlannedStep, type Step } from './plan.js';
import type { TaskOp } from './protocol.js';
import { reapAll } from './reap.js';
import type { TreeSpec } from './spec.js';
import { makeZombie, spawnTask } from './spawn-task.js';
import { textOf } from '../text.js';

export interface BuildOptions {
  /** Give up on any single step after this long (default 30 s). */
  stepTimeoutMs?: number;
  /** Stops the build: everything started so far is destroyed and buildTree rejects. */
  signal?: AbortSignal;
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
  link?: TaskLink;
}

const SIGKILL = 9;

/** Builds the tree; on any failure everything started so far is destroyed first. */
export async function buildTree(spec: TreeSpec, opts: BuildOptions = {}): Promise<BuiltTree> {
  const plan = planTree(spec); // refuses a bad spec before any process starts
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  const b = new Builder(plan, new ControlServer(opts.stepTimeoutMs ?? 30_000));
  try {
    b.startExternals();
    await b.run(opts.signal);
    return b.result(spec);
  } catch (err) {
    await b.destroy();
    throw err;
  }
}

class Builder {
  private readonly peers = new Map<string, Peer>();
  private readonly externals = new Map<string, Peer>();
  private readonly threadTids = new Map<string, number[]>();
  private destroyed = false;

  constructor(
    private readonly plan: Plan,
    private readonly control: ControlServer,
  ) {}

  /** Each in its own session, like the tree's root (see spawnTask). */
  startExternals(): void {
    for (const e of this.plan.externals) {
      const pid = e.zombie
        ? makeZombie(e.zombie.status, { setsid: true })
        : spawn({ path: '/bin/sleep', argv: ['sleep', 'infinity'], closeFrom: 3, setsid: true });
      this.externals.set(e.name, { pid, pidfd: pidfdOpen(pid) });
    }
  }

  /**
   * Runs every step as soon as what it needs exists; independent steps run together.
   * An abort of `signal` rejects at once (the caller destroys what was started).
   */
  async run(signal?: AbortSignal): Promise<void> {
    let onAbort = (): void => {};
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () =>
        reject(
          new PcrError('PCR_ERR_RESTORE', `example tree not built: ${textOf(signal?.reason)}`),
        );
    });
    aborted.catch(() => {}); // observed through Promise.race below
    if (signal?.aborted) onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await this.runSteps(aborted);
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
    this.control.stopListening();
  }

  private async runSteps(aborted: Promise<never>): Promise<void> {
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
      await Promise.race([...running, aborted]);
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
        const { by: _by, target, ...rest } = step;
        await this.request(step.by, { ...rest, pid: this.targetPid(target) });
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
      default: {
        const { by: _by, ...op } = step; // dead, deadThread, dup, finalize: sent as they are
        await this.request(step.by, op);
        return;
      }
    }
  }

  private targetPid(target: Extract<Step, { op: 'open' }>['target']): number {
    if ('task' in target) return this.pidOf(target.task);
    if ('external' in target) return this.pidOf(target.external);
    const tid = this.threadTids.get(target.thread.task)?.[target.thread.index];
    if (tid === undefined) {
      throw new PcrError(
        'PCR_ERR_INTERNAL',
        `example: no thread ${target.thread.index} in '${target.thread.task}'`,
      );
    }
    return tid;
  }

  private async spawnTask(step: Extract<Step, { op: 'spawn' }>): Promise<void> {
    const hello = this.control.waitHello(step.task);
    hello.catch(() => {}); // awaited below, possibly after a failed spawn
    const { inherit, reserve } = step;
    let pid: number;
    if (step.by === undefined) {
      // The root leads its own session (and process group), as the restored root does:
      // a signal to our group (a terminal's Ctrl-C) does not reach the tree; we decide.
      pid = spawnTask({
        name: step.task,
        socketPath: this.control.socketPath,
        inherit,
        reserve,
        setsid: true,
      });
      this.peers.set(step.task, { pid, pidfd: pidfdOpen(pid) });
    } else {
      pid = (await this.request(step.by, { op: 'spawn', child: step.task, inherit, reserve })).pid!;
      this.peers.set(step.task, { pid, pidfd: pidfdOpen(pid) });
    }
    const { pid: helloPid, link } = await hello;
    if (helloPid !== pid) {
      throw new PcrError(
        'PCR_ERR_INTERNAL',
        `task '${step.task}' said hello as ${helloPid}, spawned as ${pid}`,
      );
    }
    this.peers.get(step.task)!.link = link;
  }

  private pidOf(name: string): number {
    const p = this.peers.get(name) ?? this.externals.get(name);
    if (!p) throw new PcrError('PCR_ERR_INTERNAL', `example: '${name}' is not started`);
    return p.pid;
  }

  private request(task: string, body: TaskOp, fds: number[] = []): Promise<Reply> {
    const link = this.peers.get(task)?.link;
    if (!link) throw new PcrError('PCR_ERR_INTERNAL', `example: task '${task}' is not connected`);
    return link.request(body, fds);
  }

  result(spec: TreeSpec): BuiltTree {
    const pids = new Map<string, number>();
    for (const [n, p] of [...this.peers, ...this.externals]) pids.set(n, p.pid);
    for (const p of this.peers.values()) p.link?.unref();
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
    this.control.close();
    const all = [...this.peers.values(), ...this.externals.values()];
    for (const p of all) {
      try {
        pidfdSendSignal(p.pidfd, SIGKILL);
      } catch (err) {
        if (!isErrno(err, 'ESRCH')) throw err;
      }
    }
    await reapAll(all.map((p) => p.pidfd));
  }
}
