/**
 * Coordinator <-> worker messages as TypeScript values. On the wire each is one protobuf
 * frame (`pidfdcr.protocol.ToWorker` / `ToCoordinator`, see proto/protocol.proto and
 * wire.ts). The `type` of a worker message is also the coordinator machine's event type,
 * and GO / TEARDOWN / HANDOFF are the task machine's events, so a decoded frame can be sent to
 * the machine as it is.
 */
import type { PcrErrorCode } from '../errors.js';
import type { BroadcastPhase, Phase, TaskPlan } from '../plan/types.js';

export interface PidPair {
  dumped: number;
  restored: number;
}

/** Dumped -> restored ids: every task (workers and zombies) and every planned thread. */
export interface PidMap {
  /** Sorted by dumped pid. */
  pids: PidPair[];
  /** Sorted by dumped tid. */
  tids: PidPair[];
}

/** A failure as a worker reports it; mirrors PcrError / SyscallError. */
export interface Failure {
  code: PcrErrorCode;
  message: string;
  phase: Phase;
  syscall?: string;
  errno?: number;
  errnoName?: string;
}

/** One pidfd of a restored task as its worker sees it in /proc after `finalize`. */
export interface ReportedFd {
  fd: number;
  /** f_flags from fdinfo without the per-fd O_CLOEXEC (kept when the file carries it). */
  flags: number;
  cloexec: boolean;
  /** pidfs ino (decimal). */
  ino: string;
  /** fdinfo Pid: restored pid or tid, -1 once reaped, 0 if not visible. */
  targetPid: number;
  /** PIDFD_GET_INFO exit code (wait status word) when the kernel has one. */
  exitStatus?: number;
  /**
   * For a visible target (Pid > 0): its /proc/P/stat state letter (field 3) and, when
   * that is 'Z', its exit code (field 52, the wait status word, readable while it is a
   * zombie). Lets verification tell a restored zombie from a live process.
   */
  targetState?: string;
  targetExitCode?: number;
  /**
   * Open-file class key: "restoredPid:fd" of the smallest (restored pid, fd) in the
   * restored tree that kcmp(KCMP_FILE) says is the same open file description. Equal keys
   * across reports <=> one open file description.
   */
  fileClass: string;
}

export interface FdReport {
  /** Dumped pid. */
  pid: number;
  restoredPid: number;
  /** Sorted by fd; every pidfd of the task, including unexpected ones. */
  fds: ReportedFd[];
}

/** One state transition of a machine, for the trace log. */
export interface TraceEntry {
  /** "coordinator" or "task:<dumped pid>". */
  machine: string;
  from: string;
  to: string;
  event: string;
  /** JSON, free form. */
  details: string;
  timeMs: number;
  /**
   * Absent or "state": a state change. Otherwise an added kind the worker records itself
   * ("process", "fd-transfer"; docs/trace.md) with its payload as JSON in `data`.
   */
  kind?: string;
  data?: string;
}

// Worker -> coordinator (the type is the coordinator machine's event type).
export interface WorkerHello {
  type: 'WORKER_HELLO';
  pid: number;
  restoredPid: number;
  /**
   * The nonce the worker also sent in its AuthProof (16 bytes): the coordinator accepts
   * the HELLO only if the process `restoredPid` proved this nonce (docs/protocol.md).
   */
  nonce?: Uint8Array;
}
export interface ChildrenSpawned {
  type: 'CHILDREN_SPAWNED';
  pid: number;
  /** Worker and zombie children of this task. */
  children: PidPair[];
  /** Threads made for the planned thread targets of this task. */
  threads: PidPair[];
}
/**
 * The task started its work of `phase` (after GO every task is in open-alive; it says so
 * only when its step's phase changes). Nobody waits for it: it tells the coordinator
 * where a task is, for the messages of a failure, a timeout or a stop.
 */
export interface StepMessage {
  type: 'STEP';
  pid: number;
  phase: BroadcastPhase;
}
export interface WorkerFailed {
  type: 'WORKER_FAILED';
  pid: number;
  failure: Failure;
}
export interface FdReportMessage {
  type: 'FD_REPORT';
  report: FdReport;
}
export interface TraceMessage {
  type: 'TRACE';
  pid: number;
  trace: TraceEntry;
}
/** The worker sent its Handoff batches to the host (no exec asked). */
export interface HandedOff {
  type: 'HANDED_OFF';
  pid: number;
}
export type WorkerMessage =
  | WorkerHello
  | ChildrenSpawned
  | StepMessage
  | WorkerFailed
  | FdReportMessage
  | TraceMessage
  | HandedOff;

/**
 * Worker -> coordinator over the auth socket (one per connection; the sender's pid comes
 * from SO_PEERCRED): the proof that goes with a HELLO, or a failure before any HELLO.
 */
export type AuthMessage =
  | { type: 'AUTH_PROOF'; pid: number; nonce: Uint8Array }
  | { type: 'STARTUP_FAILED'; pid: number; failure: Failure };

// Coordinator -> worker (GO, TEARDOWN and HANDOFF are the task machine's events).
export interface AssignMessage {
  type: 'ASSIGN';
  plan: TaskPlan;
}
/**
 * The one go-signal: every task registered (and the treeBuilt hook passed). Carries the
 * complete pid map; each task then runs its own steps (docs/restore.md "Phases").
 */
export interface GoMessage {
  type: 'GO';
  pidMap: PidMap;
}
/**
 * How long a worker, on TEARDOWN, waits for its child workers before SIGKILL. The
 * coordinator waits longer (COORDINATOR_GRACE_MS) so that a parent always reaps its own
 * children: a parent SIGKILLed first would leave them to die by PDEATHSIG, unreaped.
 */
export const WORKER_CHILD_GRACE_MS = 2000;
export const COORDINATOR_GRACE_MS = WORKER_CHILD_GRACE_MS + 1000;
export interface TeardownMessage {
  type: 'TEARDOWN';
  reason: string;
}
/** One SCM_RIGHTS message to the host: payload and the fd numbers to attach. */
export interface HandoffBatch {
  payload: Uint8Array;
  fds: number[];
}
/** After verification: send batches to the host's socket, then exec (docs/restore.md). */
export interface HandoffMessage {
  type: 'HANDOFF';
  /** '' when no socket hand-off. */
  socketPath: string;
  batches: HandoffBatch[];
  /** [] when no exec; [0] is the program's absolute path. */
  execArgv: string[];
  /** "NAME=value", the program's whole environment. */
  execEnv: string[];
}
export type CoordinatorMessage = AssignMessage | GoMessage | TeardownMessage | HandoffMessage;

/**
 * Payload byte(s) that accompany fds over SCM_RIGHTS: which files, in fd order. A
 * creator's notice that it reaped its temporaries (phase kill-temp) names no file and
 * carries no fd.
 */
export interface FdTransfer {
  /** Dumped pid of the sender. */
  from: number;
  phase: BroadcastPhase;
  fileIds: number[];
  /** The sender's id of this message, traced on both sides ("" when not given). */
  messageId?: string;
}
