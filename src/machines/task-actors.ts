/**
 * The effects the task machine invokes, as typed inputs and outputs. The machine ships
 * placeholders that reject; the worker provides the real ones (src/actors) with
 * `taskMachine.provide({ actors: {...} })`, tests provide stubs.
 *
 * Ownership of fds: an actor may close its own temporaries; any fd it leaves open that is
 * not part of the plan's final table goes into `helperFds`, and `finalizeFds` closes it.
 */
import { notProvided } from './not-provided.js';
import { fromPromise } from 'xstate';
import type { FdReport, HandoffMessage, PidMap, PidPair } from '../protocol/messages.js';
import type {
  OpenPhase,
  OpenStep,
  PlannedFd,
  ReceiveStep,
  SendStep,
  TempStep,
  WorkerChild,
  ZombieChild,
} from '../plan/types.js';

/** Which local fd holds a file (an installed fd number, or a temporary one). */
export interface FileFd {
  fileId: number;
  fd: number;
}

/** A temporary process made by a creator. */
export interface TempProcess extends TempStep {
  /** Its pid (restored pid namespace). */
  pid: number;
}

export interface SpawnChildrenInput {
  pid: number;
  workerChildren: WorkerChild[];
  zombieChildren: ZombieChild[];
  /** Dumped tids that each need a live non-leader thread in this worker. */
  threads: number[];
}
export interface SpawnChildrenOutput {
  /** One pair per worker and zombie child. */
  children: PidPair[];
  /** One pair per planned thread (dumped tid -> restored tid), distinct restored tids. */
  threads: PidPair[];
}

export interface SpawnTempInput {
  pid: number;
  temps: TempStep[];
}
export interface SpawnTempOutput {
  temps: TempProcess[];
  helperFds: number[];
}

export interface OpenFilesInput {
  pid: number;
  phase: OpenPhase;
  opens: OpenStep[];
  pidMap: PidMap;
  /** The temps of this task (dead phase), for `temp` opens. */
  temps: TempProcess[];
}
export interface OpenFilesOutput {
  files: FileFd[];
  helperFds: number[];
}

export interface SendFdsInput {
  pid: number;
  phase: OpenPhase;
  sends: SendStep[];
  /** Every file this task holds so far (opened or received). */
  files: FileFd[];
  pidMap: PidMap;
}
export interface SendFdsOutput {
  /** Number of SCM_RIGHTS messages sent. */
  messages: number;
  /** Dumped pids sent to, in order (for the trace). */
  peers?: number[];
}

/** One SCM_RIGHTS message a task waits for, and the open phase it belongs to. */
export interface PhasedReceive {
  phase: OpenPhase;
  step: ReceiveStep;
}

export interface RecvFdsInput {
  pid: number;
  /** Every message it receives, of both open phases, in any order of arrival. */
  receives: PhasedReceive[];
  pidMap: PidMap;
}
export interface RecvFdsOutput {
  files: FileFd[];
  helperFds: number[];
  /** Dumped pids received from, in order (for the trace). */
  peers?: number[];
}

export interface FinishTempInput {
  pid: number;
  temps: TempProcess[];
  /** Tasks it sent pidfds of these temps to: each gets a notice once all are reaped. */
  notify: number[];
  pidMap: PidMap;
}
export interface FinishTempOutput {
  /** How each temp really died (wait status word); must equal its exitStatus. */
  reaped: { groupId: number; status: number }[];
}

export interface AwaitTempExitsInput {
  pid: number;
  /** The creators whose temps' pidfds this task received. */
  creators: number[];
  pidMap: PidMap;
}

export interface FinalizeFdsInput {
  pid: number;
  /** The exact final pidfd table. */
  fds: PlannedFd[];
  /** Helper fds to close. */
  drop: number[];
}
export interface FinalizeFdsOutput {
  closed: number[];
}

export interface ReportFdsInput {
  pid: number;
  pidMap: PidMap;
}
export type ReportFdsOutput = FdReport;

export interface HandOffInput {
  pid: number;
  /** The final pidfd table (the fds an exec keeps, with their planned cloexec bits). */
  fds: PlannedFd[];
  handoff: HandoffMessage;
}
/** Resolves only when nothing was exec'd: a successful exec never comes back. */
export interface HandOffOutput {
  /** Batches sent to the host's socket. */
  batches: number;
}

export interface TearDownInput {
  pid: number;
  reason: string;
}
export type TearDownOutput = void;

export const taskActorPlaceholders = {
  spawnChildren: fromPromise<SpawnChildrenOutput, SpawnChildrenInput>(notProvided('spawnChildren')),
  spawnTemp: fromPromise<SpawnTempOutput, SpawnTempInput>(notProvided('spawnTemp')),
  openFiles: fromPromise<OpenFilesOutput, OpenFilesInput>(notProvided('openFiles')),
  sendFds: fromPromise<SendFdsOutput, SendFdsInput>(notProvided('sendFds')),
  recvFds: fromPromise<RecvFdsOutput, RecvFdsInput>(notProvided('recvFds')),
  finishTemp: fromPromise<FinishTempOutput, FinishTempInput>(notProvided('finishTemp')),
  awaitTempExits: fromPromise<void, AwaitTempExitsInput>(notProvided('awaitTempExits')),
  finalizeFds: fromPromise<FinalizeFdsOutput, FinalizeFdsInput>(notProvided('finalizeFds')),
  reportFds: fromPromise<ReportFdsOutput, ReportFdsInput>(notProvided('reportFds')),
  handOff: fromPromise<HandOffOutput, HandOffInput>(notProvided('handOff')),
  tearDown: fromPromise<TearDownOutput, TearDownInput>(notProvided('tearDown')),
};
