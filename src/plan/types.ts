/**
 * The restore plan: what `planRestore` (planner.ts) computes from an image, and what the
 * coordinator hands every worker (as `pidfdcr.protocol.TaskPlan`, see wire.ts). A worker
 * never recomputes anything: its TaskPlan says which processes it spawns, which fd numbers
 * it reserves, and what it opens, sends and receives in every phase.
 *
 * All pids and tids are DUMPED ids; the worker resolves them through the PidMap that comes
 * with the GO message. Inode numbers are decimal strings (64-bit, never narrowed, and
 * JSON-safe inside XState snapshots and traces).
 */
import type { TargetKind } from '../model/image.js';
import type { ExitStatusSource, OpenHow } from '../kinds/open-how.js';

/** Every phase of a restore, in order. */
export const PHASES = ['spawn', 'open-alive', 'dead', 'kill-temp', 'finalize', 'verify'] as const;
export type Phase = (typeof PHASES)[number];

/**
 * The phases of a task's steps after GO (what STEP names); `spawn` starts by itself when
 * a worker gets its plan. (Once the phases the coordinator broadcast one by one.)
 */
export const BROADCAST_PHASES = ['open-alive', 'dead', 'kill-temp', 'finalize', 'verify'] as const;
export type BroadcastPhase = (typeof BROADCAST_PHASES)[number];

/** The phases in which files are opened and passed around. */
export type OpenPhase = 'open-alive' | 'dead';

export type { ExitStatusSource, OpenHow, Strategy } from '../kinds/open-how.js';

/** One fd number a task ends up holding, with its close-on-exec bit. */
export interface FdInstall {
  fd: number;
  cloexec: boolean;
}

/** The final pidfd table of a task: exactly this, nothing more, after `finalize`. */
export interface PlannedFd extends FdInstall {
  fileId: number;
}

export interface FileHolder {
  /** Dumped pid. */
  pid: number;
  /** Sorted by fd number. Several entries = several fds of one open file (dup). */
  fds: FdInstall[];
}

/** One open file description (image PidfdFile) and how it comes back. */
export interface FilePlan {
  fileId: number;
  /** f_flags to reproduce: O_RDWR, optionally O_NONBLOCK and O_EXCL (= PIDFD_THREAD). */
  flags: number;
  /** Dumped pidfs ino of the target. */
  ino: string;
  targetKind: TargetKind;
  phase: OpenPhase;
  /**
   * Dumped pid of the task that opens the file and sends it to every other holder, or
   * COORDINATOR_OPENER: the coordinator opens it and sends it to every holder.
   */
  opener: number;
  how: OpenHow;
  /** The flags argument of pidfd_open (PIDFD_NONBLOCK, PIDFD_THREAD). */
  pidfdFlags: number;
  /**
   * When set, the pidfd is then reopened and the reopened file is the one installed and
   * sent. With access mode 03 (no O_LARGEFILE): open_by_handle_at(FD_PIDFS_ROOT,
   * handle(ino), O_WRONLY|[O_NONBLOCK]), which the kernel gives f_flags 03, no privilege
   * needed. Otherwise open("/proc/self/fd/N", reopenFlags) (flags with O_LARGEFILE or
   * another access mode), which needs CAP_DAC_OVERRIDE: pidfs inodes are 0700 root.
   */
  reopenFlags?: number;
  /** Sorted by pid; the opener is among them unless it is a creator opening for others. */
  holders: FileHolder[];
}

/**
 * The opener of a file the coordinator opens (no dumped pid is 0): under `--pidns new`,
 * an external target is not visible from inside the new namespace, so the coordinator,
 * outside it, reopens it (identity-checked, kinds/external.ts) and sends it to every
 * holder right after GO (coordinator/external-send.ts). Its fds come from a peer outside
 * the holder's pid namespace, whose SO_PEERCRED pid there is 0.
 */
export const COORDINATOR_OPENER = 0;

/** All files whose target is one dead process (or thread): one pidfs ino, one temp x. */
export interface DeadGroup {
  groupId: number;
  ino: string;
  /** Highest dumped pid among the holders of any file of this ino (CRIU design page). */
  creator: number;
  /** Wait status word x must die with. */
  exitStatus: number;
  statusSource: ExitStatusSource;
  /** Sorted. */
  fileIds: number[];
}

/** A temporary process a creator makes in `dead` and finishes in `kill-temp`. */
export interface TempStep {
  groupId: number;
  ino: string;
  exitStatus: number;
  statusSource: ExitStatusSource;
}

/** Open one file and install it at `installAt` (empty: the opener only sends it). */
export interface OpenStep {
  fileId: number;
  /** The f_flags the file must end up with (what verification expects). */
  flags: number;
  how: OpenHow;
  /** The flags argument of pidfd_open (PIDFD_NONBLOCK, PIDFD_THREAD). */
  pidfdFlags: number;
  /** See FilePlan.reopenFlags. */
  reopenFlags?: number;
  installAt: FdInstall[];
}

/** One SCM_RIGHTS message to `to`: one fd per file, in this order (≤ MAX_FDS_PER_MESSAGE). */
export interface SendStep {
  to: number;
  fileIds: number[];
}

export interface ReceivedFile {
  fileId: number;
  installAt: FdInstall[];
}

/** One SCM_RIGHTS message expected from `from`, files in this order. */
export interface ReceiveStep {
  from: number;
  files: ReceivedFile[];
}

/** What a task does in one open phase, in this order: temps, opens, sends, receives. */
export interface PhaseSteps {
  temps: TempStep[];
  opens: OpenStep[];
  sends: SendStep[];
  receives: ReceiveStep[];
}

export interface WorkerChild {
  /** Dumped pid. */
  pid: number;
  /** fd numbers to reserve in the child at spawn (its future pidfds). */
  reservedFds: number[];
}

export interface ZombieChild {
  pid: number;
  /** Wait status word it exits with; its parent never reaps it. */
  exitStatus: number;
  comm: string;
}

/** Everything one worker does. */
export interface TaskPlan {
  /** Dumped pid (also the ZeroMQ routing id, as a decimal string). */
  pid: number;
  /** Dumped parent pid; 0 for the root (spawned by the coordinator). */
  ppid: number;
  comm: string;
  /** fd numbers this task must not use for anything else (sorted); reserved at spawn. */
  reservedFds: number[];
  workerChildren: WorkerChild[];
  zombieChildren: ZombieChild[];
  /** Dumped tids of thread targets owned by this task: each needs its own live thread. */
  threads: number[];
  steps: Record<OpenPhase, PhaseSteps>;
  /** Group ids of the temps this task finishes in `kill-temp` (= steps.dead.temps). */
  killTemps: number[];
  /** The final pidfd table, sorted by fd. */
  fds: PlannedFd[];
}

export interface RestorePlan {
  rootPid: number;
  /** Boot id of the dump; external-reopen requires the same boot. */
  bootId: string;
  /** External targets were planned as dead (PlanOptions.externalDead). */
  externalDead: boolean;
  /** Planned for `--pidns new` (PlanOptions.pidnsNew): the coordinator opens externals. */
  pidnsNew?: boolean;
  /** Worker tasks, parents first (image order). Zombie tasks are ZombieChild entries. */
  tasks: TaskPlan[];
  files: FilePlan[];
  deadGroups: DeadGroup[];
}

export interface PlanOptions {
  /** Plan external targets as dead (temp x killed by SIGKILL) instead of reopening them. */
  externalDead?: boolean;
  /**
   * Boot id of the restoring machine, when known. External targets cannot be reopened on
   * another boot: without `externalDead` they are refused.
   */
  currentBootId?: string;
  /**
   * The restore runs without CAP_DAC_OVERRIDE: files that need a /proc/self/fd reopen
   * (O_LARGEFILE, other access modes) are refused at plan time instead of failing later.
   */
  unprivileged?: boolean;
  /**
   * restore --pidns new: the root becomes the init of a new pid namespace, so tasks that
   * lived in the root's own (nested) namespace are fine; with `samePids` the root must
   * have been that namespace's init (innermost pid 1).
   */
  pidnsNew?: boolean;
  samePids?: boolean;
}
