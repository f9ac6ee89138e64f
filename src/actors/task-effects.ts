/**
 * The task machine's actors, implemented with the effects of src/actors for one worker
 * process. State that must outlive one actor (the fd inbox, the temporaries, the
 * children) lives in WorkerEffects; the actors are `fromPromise`. A wait of an actor the
 * machine stopped (fds from peers, a temp's death) is ended by tearDown, which closes the
 * inbox and aborts the temps, not by an AbortSignal listener (≈ 1 ms of CPU for the first
 * one in a process, inside a phase).
 */
import { bootId } from '../procfs/host.js';
import { fdSocketPath } from '../protocol/paths.js';
import { fromPromise } from 'xstate';
import { closeQuiet, kernelRandom } from '../../native/index.js';
import { PcrError } from '../errors.js';
import { sendFdMessages } from '../sys/fd-channel.js';
import {
  openAs,
  type OpenFlags,
  openExternal,
  installFile,
  finalizeCloexec,
} from '../sys/open-files.js';
import { reserveThreads } from '../sys/threads.js';
import { strategyOf } from '../kinds/registry.js';
import {
  startTemp,
  reapTemp,
  abortTemp,
  type TempProcess as XProcess,
} from '../sys/temp-process.js';
import { reportFds } from '../verify/report.js';
import { encodeFdTransfer } from '../protocol/wire.js';
import { requireRestoredPid, restoredTid } from '../protocol/pidmap.js';
import type { OpenStep, Phase } from '../plan/types.js';
import { WORKER_CHILD_GRACE_MS, type PidMap } from '../protocol/messages.js';
import { restoredPid } from '../protocol/pidmap.js';
import type {
  FileFd,
  OpenFilesInput,
  OpenFilesOutput,
  RecvFdsInput,
  RecvFdsOutput,
  SendFdsInput,
  SendFdsOutput,
  SpawnChildrenInput,
  SpawnChildrenOutput,
  SpawnTempInput,
  SpawnTempOutput,
  FinishTempInput,
  FinishTempOutput,
  AwaitTempExitsInput,
  FinalizeFdsInput,
  FinalizeFdsOutput,
  ReportFdsInput,
  ReportFdsOutput,
  TearDownInput,
  HandOffInput,
  HandOffOutput,
} from '../machines/task-actors.js';
import { wrongTempDeath } from '../machines/task.js';
import { handOff } from './handoff.js';
import { FdInbox } from './inbox.js';
import { Children } from './children.js';
import { injectFault, type Fault } from './fault.js';
import type { NoteSink, TraceTransfer } from '../protocol/trace.js';
import type { TempStep } from '../plan/types.js';

const now = (): number => performance.timeOrigin + performance.now();

export interface WorkerEffectsOptions {
  dumpedPid: number;
  rundir: string;
  /** Our fd given to child workers as stderr (null: /dev/null). */
  stderrFd: number | null;
  fault?: Fault;
  /** Child workers send TRACE messages. */
  trace: boolean;
  /**
   * Where this worker's own trace events go (its temporary processes, the fds it sends
   * and receives; docs/trace.md): given only when tracing.
   */
  note?: NoteSink;
  /** Child workers spawned before the plan came: dumped pid -> pid. */
  prespawned?: ReadonlyMap<number, number>;
  /** How long teardown waits for child workers before SIGKILL. */
  teardownGraceMs?: number;
  /** restore --same-pids: children at their dumped pids (WorkerIdentity.samePids). */
  samePids?: boolean;
  /** restore --pidns new: this worker lives in the new pid namespace. */
  inPidns?: boolean;
}

export class WorkerEffects {
  readonly inbox: FdInbox;
  private readonly children: Children;
  private readonly temps = new Map<number, XProcess>();
  /** Group id -> the dead target's dumped ino, for the temps' trace events. */
  private readonly tempInos = new Map<number, string>();
  private tornDown = false;
  /**
   * spawnTemp ran: the temps belong to the dead phase now, prestartTemps must not add
   * any (see there).
   */
  private tempsClaimed = false;
  /** CHILDREN_SPAWNED went to the coordinator: it knows our child workers (see tearDown). */
  private childrenReported = false;
  /** The dead phase's temps, started by spawnChildren before it reports (planTemps). */
  private plannedTemps: SpawnTempInput['temps'] = [];

  constructor(private readonly opts: WorkerEffectsOptions) {
    this.inbox = new FdInbox(opts.rundir, opts.dumpedPid);
    this.children = new Children(
      opts.rundir,
      opts.stderrFd,
      opts.trace,
      (task, pid, status) => {
        const time = now();
        opts.note?.({
          kind: 'process',
          time,
          process: {
            action: 'exit',
            role: 'zombie',
            pid,
            ppid: process.pid,
            task,
            exitTime: time,
            waitStatus: status,
          },
        });
      },
      opts.samePids,
      opts.inPidns,
    );
    if (opts.prespawned) this.children.adopt(opts.prespawned);
  }

  private fault(phase: Phase): Promise<void> {
    return injectFault(this.opts.fault, this.opts.dumpedPid, phase);
  }

  async spawnChildren(input: SpawnChildrenInput): Promise<SpawnChildrenOutput> {
    await this.fault('spawn');
    const children = [
      ...this.children.spawnWorkers(input.workerChildren),
      ...this.children.spawnZombies(input.zombieChildren),
    ];
    // x of the dead phase now, before CHILDREN_SPAWNED and so before GO: started after GO
    // (a setImmediate once), the last-registered creators spawned theirs inside
    // become-creator, on the critical path (docs/restore.md "Session 6").
    this.prestartTemps(this.plannedTemps);
    const tids = await reserveThreads(input.threads.length);
    const threads = input.threads.map((dumped, i) => ({ dumped, restored: tids[i]! }));
    return { children, threads };
  }

  /** The dead phase's temps, for spawnChildren to start early (run.ts, before start). */
  planTemps(steps: SpawnTempInput['temps']): void {
    this.plannedTemps = steps;
  }

  /**
   * Starts the temporary processes of the dead phase as soon as the plan is known, so
   * that become-creator only opens pidfds to an x that is already there. x dies at once
   * and stays our zombie child until finishTemp reaps it; nothing in the restored tree
   * can see it. A failure here is left to spawnTemp, which starts what is missing and
   * reports the error in its phase.
   *
   * Only until spawnTemp ran (tempsClaimed): a prestart that came after finishTemp had
   * reaped and removed some groups would start a new x for each of them that nobody
   * opened, reaped or closed until teardown (seen when this ran from a setImmediate
   * after start: the rare restore-extra failure "fd 31: a pidfd … not in the image").
   * spawnChildren calls it now, before CHILDREN_SPAWNED, so before any GO.
   */
  prestartTemps(steps: SpawnTempInput['temps']): void {
    for (const step of steps) {
      if (this.tornDown || this.tempsClaimed) return;
      if (this.temps.has(step.groupId)) continue;
      try {
        this.temps.set(step.groupId, this.startTraced(step));
      } catch {
        return;
      }
    }
  }

  async spawnTemp(input: SpawnTempInput): Promise<SpawnTempOutput> {
    this.tempsClaimed = true;
    const temps = input.temps.map((step) => {
      const x = this.temps.get(step.groupId) ?? this.startTraced(step);
      this.temps.set(step.groupId, x);
      return { ...step, pid: x.pid };
    });
    return { temps, helperFds: [] };
  }

  /** startTemp, and its `process` trace event (role temp). */
  private startTraced(step: TempStep): XProcess {
    const x = startTemp(step.exitStatus);
    this.tempInos.set(step.groupId, step.ino);
    const time = now();
    this.opts.note?.({
      kind: 'process',
      time,
      process: {
        action: 'spawn',
        role: 'temp',
        pid: x.pid,
        ppid: process.pid,
        ino: step.ino,
        creator: this.opts.dumpedPid,
        startTime: time,
      },
      details: { phase: 'dead' },
    });
    return x;
  }

  /** The exit event of temp `x` of group `groupId`, reaped with `status` (if known). */
  private noteTempExit(groupId: number, x: XProcess, status: number | undefined): void {
    const time = now();
    const ino = this.tempInos.get(groupId);
    this.opts.note?.({
      kind: 'process',
      time,
      process: {
        action: 'exit',
        role: 'temp',
        pid: x.pid,
        ppid: process.pid,
        ...(ino === undefined ? {} : { ino }),
        creator: this.opts.dumpedPid,
        exitTime: time,
        ...(status === undefined ? {} : { waitStatus: status }),
      },
      details: { phase: 'kill-temp' },
    });
  }

  private openOne(step: OpenStep, pidMap: PidMap): number {
    const how = step.how;
    const as: OpenFlags = {
      flags: step.flags,
      pidfdFlags: step.pidfdFlags,
      ...(step.reopenFlags === undefined ? {} : { reopenFlags: step.reopenFlags }),
    };
    return strategyOf(how).open(how, as, {
      restoredPid: (dumped) => requireRestoredPid(pidMap, dumped),
      restoredTid: (dumped) => restoredTid(pidMap, dumped),
      tempPid: (groupId) => this.temps.get(groupId)?.pid,
      openPid: openAs,
      openExternal: (target, flags, imageBootId) =>
        openExternal(target, flags, imageBootId, bootId()),
    });
  }

  async openFiles(input: OpenFilesInput): Promise<OpenFilesOutput> {
    await this.fault(input.phase);
    this.inbox.setPidMap(input.pidMap);
    const files: FileFd[] = [];
    const helperFds: number[] = [];
    for (const step of input.opens) {
      const fd = this.openOne(step, input.pidMap);
      if (step.installAt.length === 0) {
        helperFds.push(fd); // opened only to be sent: closed in finalize
        files.push({ fileId: step.fileId, fd });
      } else {
        installFile(
          fd,
          step.installAt.map((i) => i.fd),
        );
        files.push({ fileId: step.fileId, fd: step.installAt[0]!.fd });
      }
    }
    return { files, helperFds };
  }

  async sendFds(input: SendFdsInput): Promise<SendFdsOutput> {
    // Tracing: let the machine's own `… -> sending` trace go first (it is sent once this
    // synchronous start of the actor returns), so the send events come after it.
    if (this.opts.note) await Promise.resolve();
    const byId = new Map(input.files.map((f) => [f.fileId, f.fd]));
    for (const send of input.sends) {
      const fds = send.fileIds.map((id) => {
        const fd = byId.get(id);
        if (fd === undefined)
          throw new PcrError(
            'PCR_ERR_INTERNAL',
            `file ${id} is not held, cannot send it to task ${send.to}`,
          );
        return fd;
      });
      // One id per message, inside it: the receiver traces the same one.
      const messageId = this.opts.note ? kernelRandom(8).toString('hex') : undefined;
      const payload = Buffer.from(
        encodeFdTransfer({
          from: input.pid,
          phase: input.phase,
          fileIds: send.fileIds,
          ...(messageId ? { messageId } : {}),
        }),
      );
      const time = now();
      sendFdMessages(
        fdSocketPath(this.opts.rundir, send.to),
        [{ payload, fds }],
        restoredPid(input.pidMap, send.to),
      );
      if (messageId)
        this.noteTransfer(time, input.phase, {
          id: messageId,
          side: 'send',
          sender: input.pid,
          receiver: send.to,
          files: send.fileIds,
          fds,
        });
    }
    return { messages: input.sends.length, peers: input.sends.map((x) => x.to) };
  }

  /**
   * Waits for every fd other tasks send it (both open phases). A stopped actor's wait is
   * ended by tearDown (the inbox cancels it when closed), not by an AbortSignal listener:
   * the first one costs a Node process ≈ 1 ms of CPU (docs/restore.md "Performance").
   */
  async recvFds(input: RecvFdsInput): Promise<RecvFdsOutput> {
    this.inbox.setPidMap(input.pidMap);
    if (input.receives.some((r) => r.phase === 'dead')) await this.fault('dead');
    const batches = await this.inbox.receive(input.receives, input.pidMap);
    const files: FileFd[] = [];
    batches.forEach((b, i) => {
      const step = input.receives[i]!.step;
      const installed = step.files.map((f, j) => {
        const fd = b.fds[j]!;
        const at = f.installAt.map((x) => x.fd);
        installFile(fd, at);
        files.push({ fileId: f.fileId, fd: at[0] ?? fd });
        return at[0] ?? fd;
      });
      // At the time it came off the socket, with the fds it is installed at now.
      if (b.transfer.messageId)
        this.noteTransfer(b.at, b.transfer.phase, {
          id: b.transfer.messageId,
          side: 'recv',
          sender: b.transfer.from,
          receiver: this.opts.dumpedPid,
          files: b.transfer.fileIds,
          fds: installed,
        });
    });
    return { files, helperFds: [], peers: input.receives.map((r) => r.step.from) };
  }

  /**
   * Waits for each creator's notice that the temps whose pidfds it sent us died and were
   * reaped (a message without fds, phase kill-temp): only then does fdinfo say Pid: -1
   * and PIDFD_GET_INFO give the exit status. The pidfd itself cannot tell: its poll wakes
   * on the exit, not on the reap (measured: a watch for POLLHUP never fired after it).
   */
  async awaitTempExits(input: AwaitTempExitsInput): Promise<void> {
    const notices = input.creators.map((from) => ({
      phase: 'kill-temp' as const,
      step: { from, files: [] },
    }));
    await this.inbox.receive(notices, input.pidMap);
  }

  private noteTransfer(time: number, phase: string, transfer: TraceTransfer): void {
    this.opts.note?.({ kind: 'fd-transfer', time, transfer, details: { phase } });
  }

  /** Finishes this task's temps; tearDown's abortTemp ends a wait of a stopped actor. */
  async finishTemp(input: FinishTempInput): Promise<FinishTempOutput> {
    await this.fault('kill-temp');
    const reaped = await Promise.all(
      input.temps.map(async (t) => {
        const x = this.temps.get(t.groupId);
        if (!x)
          throw new PcrError('PCR_ERR_INTERNAL', `no temporary process for group ${t.groupId}`);
        const status = await reapTemp(x);
        this.temps.delete(t.groupId);
        this.noteTempExit(t.groupId, x, status);
        return { groupId: t.groupId, status };
      }),
    );
    // A temp died wrong: no notice, the machine fails the task (tempDiedWrong).
    if (wrongTempDeath(input.temps, { reaped }) !== undefined) return { reaped };
    // Every temp is reaped and checked: the tasks holding pidfds of them may report now.
    const notice = Buffer.from(
      encodeFdTransfer({ from: input.pid, phase: 'kill-temp', fileIds: [] }),
    );
    for (const to of input.notify)
      sendFdMessages(
        fdSocketPath(this.opts.rundir, to),
        [{ payload: notice, fds: [] }],
        restoredPid(input.pidMap, to),
      );
    return { reaped };
  }

  async finalizeFds(input: FinalizeFdsInput): Promise<FinalizeFdsOutput> {
    await this.fault('finalize');
    const planned = new Set(input.fds.map((f) => f.fd));
    const closed = [...new Set(input.drop)].filter((fd) => !planned.has(fd));
    closed.forEach(closeQuiet);
    finalizeCloexec(input.fds);
    // Nothing more will be sent to us: stop listening, remove the socket.
    this.inbox.close();
    return { closed };
  }

  async reportFds(input: ReportFdsInput): Promise<ReportFdsOutput> {
    await this.fault('verify');
    return reportFds(input.pid);
  }

  /** The task machine sent CHILDREN_SPAWNED (run.ts calls this as it sends it). */
  reportedChildren(): void {
    this.childrenReported = true;
  }

  /**
   * Child workers the coordinator was told about get TEARDOWN too (or, during an abort,
   * a SIGKILL from it if they never registered): they get a grace to leave. Children not
   * reported yet (TEARDOWN while spawning, e.g. a Ctrl-C during registration) can hear
   * from nobody: they are killed at once, as by tearDownNow, instead of after the grace.
   */
  async tearDown(_input: TearDownInput): Promise<void> {
    this.tornDown = true;
    this.inbox.close();
    for (const [groupId, x] of this.temps) this.noteTempExit(groupId, x, abortTemp(x));
    this.temps.clear();
    const grace = this.childrenReported ? (this.opts.teardownGraceMs ?? WORKER_CHILD_GRACE_MS) : 0;
    await this.children.reapAll(grace);
  }

  /** TEARDOWN before the plan: child workers spawned early never registered, kill them now. */
  async tearDownNow(): Promise<void> {
    this.inbox.close();
    await this.children.reapAll(0);
  }

  /** The actors for `taskMachine.provide({ actors })`. */
  actors() {
    return {
      spawnChildren: fromPromise<SpawnChildrenOutput, SpawnChildrenInput>(({ input }) =>
        this.spawnChildren(input),
      ),
      spawnTemp: fromPromise<SpawnTempOutput, SpawnTempInput>(({ input }) => this.spawnTemp(input)),
      openFiles: fromPromise<OpenFilesOutput, OpenFilesInput>(({ input }) => this.openFiles(input)),
      sendFds: fromPromise<SendFdsOutput, SendFdsInput>(({ input }) => this.sendFds(input)),
      recvFds: fromPromise<RecvFdsOutput, RecvFdsInput>(({ input }) => this.recvFds(input)),
      finishTemp: fromPromise<FinishTempOutput, FinishTempInput>(({ input }) =>
        this.finishTemp(input),
      ),
      awaitTempExits: fromPromise<void, AwaitTempExitsInput>(({ input }) =>
        this.awaitTempExits(input),
      ),
      finalizeFds: fromPromise<FinalizeFdsOutput, FinalizeFdsInput>(({ input }) =>
        this.finalizeFds(input),
      ),
      reportFds: fromPromise<ReportFdsOutput, ReportFdsInput>(({ input }) => this.reportFds(input)),
      handOff: fromPromise<HandOffOutput, HandOffInput>(({ input }) =>
        handOff(this.opts.rundir, input),
      ),
      tearDown: fromPromise<void, TearDownInput>(({ input }) => this.tearDown(input)),
    };
  }
}
