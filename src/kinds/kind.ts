/**
 * What a target kind is made of, after CRIU's per-fd-kind callbacks (files.h): every kind
 * of pidfd target (model/image.ts `TargetKind`) is one module implementing
 * `TargetKindModule`, listed once in registry.ts. Generic code (dump, validation, show,
 * planner, wire codec, worker, verification, the example tree) looks the module up and
 * never switches on the kind or on an open strategy.
 *
 * Modules are pure: whatever they need from higher rooms (pid maps, wait-status helpers,
 * syscalls) comes in through the context parameter of each operation.
 */
import type { PidfdFile, Target, TargetKind, Task } from '../model/image.js';
import type { ProcPidfd } from '../procfs/index.js';
import type { OpenFlags } from '../sys/open-files.js';
import type { ExitStatusSource, HowOf, OpenHow, Strategy } from './open-how.js';

// ---- dump: recognising a pidfd's target ------------------------------------------------

export interface TreeFacts {
  /** Inode of every task of the tree, by pid. */
  taskIno: ReadonlyMap<number, bigint>;
  zombies: ReadonlySet<number>;
  /** Owner pid of every non-leader thread of the tree, by tid. */
  threadOwner: ReadonlyMap<number, number>;
}

export interface DeadInfo {
  /** Wait status from PIDFD_INFO_EXIT; undefined when the kernel had none. */
  exitStatus?: number;
  cgroupId: bigint;
}

export interface ExternalInfo {
  comm: string;
  zombie: boolean;
  /** Thread-group leader of the target (= its pid unless it is a non-leader thread). */
  tgid: number;
}

export interface TargetProbes {
  /** PIDFD_GET_INFO(EXIT) on a copy of fd `fd` of `holder`. */
  dead(holder: number, fd: number): DeadInfo;
  external(pid: number): ExternalInfo;
  /** F_GETFL of a copy of fd `fd` of `holder` (pidfd_getfd): the file's own f_flags. */
  fileFlags?(holder: number, fd: number): number;
}

/** One pidfd of the frozen tree as dump sees it. */
export interface Sighting {
  holder: number;
  pidfd: ProcPidfd;
  tree: TreeFacts;
  probes: TargetProbes;
  /** "task 12 fd 4": how errors name the pidfd. */
  where: string;
}

// ---- validation ------------------------------------------------------------------------

/** Target fields that only some kinds may set (the others must leave them empty). */
export type OwnedField = 'exitStatus' | 'zombie' | 'tgid';

export interface ValidateContext {
  /** The image's tasks by pid, with their index in `tasks` (pids known to be unique). */
  tasks: ReadonlyMap<number, { task: Task; index: number }>;
  /** Fails (ImageError at `where`) unless `v` is a pid. */
  checkPid(v: unknown, where: string): void;
  /** Every thread id of the tree (leaders too) -> the index of its task. */
  threads: ReadonlyMap<number, number>;
}

// ---- planning --------------------------------------------------------------------------

export interface PlanContext {
  tasks: ReadonlyMap<number, Task>;
  /** Boot id of the dump. */
  bootId: string;
  /** Plan external targets as dead (PlanOptions.externalDead). */
  externalDead: boolean;
  /** Boot id of the restoring machine, when known. */
  currentBootId: string | undefined;
  /** Why a process cannot be made to die with `status` (plan/status.ts). */
  unreproducibleStatus(status: number): string | undefined;
  /** Wait status of a SIGKILLed process. */
  sigkillStatus: number;
}

/**
 * How one file of a kind comes back: opened in open-alive with `how`, made in the dead
 * phase through a temporary process dying with `exitStatus`, or refused (one sentence).
 * A string instead is an image that contradicts itself (ImageError at the file).
 */
export type Planned =
  | { dead: false; how: OpenHow }
  | { dead: true; exitStatus: number; source: ExitStatusSource }
  | { refusal: string };

// ---- opening in a task -----------------------------------------------------------------

/** What a worker gives an open strategy: its pid maps, temps and syscalls. */
export interface OpenOps {
  /** Restored pid of a dumped pid; throws when the map has none. */
  restoredPid(dumped: number): number;
  restoredTid(dumped: number): number | undefined;
  /** Pid of this task's temporary process of dead group `groupId`, if it has one. */
  tempPid(groupId: number): number | undefined;
  /** pidfd_open (and maybe a reopen) of a pid: sys/open-files.ts openAs. */
  openPid(pid: number, as: OpenFlags): number;
  /** sys/open-files.ts openExternal: reopen an external target, proving its identity. */
  openExternal(
    target: { pid: number; ino: bigint; comm: string },
    as: OpenFlags,
    imageBootId: string,
  ): number;
}

/** How one field of an OpenHow travels in protocol.proto `OpenHow`. */
export type WireType = 'int' | 'u64' | 'string' | 'bool';

/** One open strategy: owned by one kind module, usable by others (e.g. temp by external). */
export interface OpenStrategy<S extends Strategy = Strategy> {
  readonly name: S;
  /** protocol.proto `Strategy` enum value. */
  readonly wireNumber: number;
  /** protocol.proto `OpenHow` field (camelCase) of each OpenHow field, with its type. */
  readonly wireFields: { readonly [F in Exclude<keyof HowOf<S>, 'strategy'>]-?: WireType };
  /** pidfd_open flags this strategy always adds (thread-open: PIDFD_THREAD). */
  readonly pidfdFlags: number;
  /** A live thread the opener's task must have for this open (planner: TaskPlan.threads). */
  liveThread?(how: HowOf<S>): { taskPid: number; tid: number } | undefined;
  /** Makes the file in a worker; returns the new fd. */
  open(how: HowOf<S>, as: OpenFlags, ops: OpenOps): number;
}

// ---- verification, show, the example tree ----------------------------------------------

/**
 * What the target of a restored fd must look like. "alive" means not reaped (fdinfo
 * shows a pid); `zombie` adds the wait status a zombie target must show in /proc.
 */
export type ExpectedTarget =
  | {
      alive: true;
      pid: number | undefined;
      ino?: string;
      zombie?: { exitStatus?: number };
      /** An in-tree live task: /proc must not show it as a zombie. */
      running?: boolean;
    }
  | { alive: false; exitStatus: number | undefined };

export interface ExpectContext {
  restoredPid(dumped: number): number | undefined;
  restoredTid(dumped: number): number | undefined;
  task(pid: number): Task | undefined;
  /** External targets were restored as dead. */
  externalDead: boolean;
  /**
   * Restored with `--pidns new`: the tasks' fdinfo `Pid:` is that of the new namespace,
   * where a process outside it is not visible (`Pid: 0`).
   */
  pidnsNew?: boolean;
  sigkillStatus: number;
}

export interface DescribeContext {
  task(pid: number): Task | undefined;
  /** " (comm)" of a task of the image, or "". */
  commOf(pid: number): string;
  /** "exited 7", "killed by SIGTERM" (image/describe.ts decodeEndStatus). */
  endText(status: number): string;
}

/** A target as the example tree's expectations describe it (testing/expected.ts). */
export type ExampleTarget =
  | { kind: 'in-tree-alive'; pid: number }
  /** The zombie's wait status is on its task (ExpectedTask.exitStatus). */
  | { kind: 'in-tree-zombie'; pid: number }
  | { kind: 'dead'; exitStatus: number }
  | { kind: 'thread'; tid: number; taskPid: number }
  | { kind: 'external'; pid: number; zombie: boolean };

// ---- the module ------------------------------------------------------------------------

export interface TargetKindModule<K extends TargetKind = TargetKind> {
  readonly name: K;
  /** image.proto `TargetKind` enum value. */
  readonly protoNumber: number;
  /** Target fields of OwnedField only this kind (and others owning them) may set. */
  readonly owns: readonly OwnedField[];
  /** Open strategies this kind introduces (others may use them too). */
  readonly strategies: readonly OpenStrategy[];
  /** dump: the target of a pidfd when it is of this kind, else undefined. May probe. */
  recognise(s: Sighting): Target | undefined;
  /** Image validation beyond the owned fields; throws ImageError at `where`.<field>. */
  validate(target: Target, where: string, ctx: ValidateContext): void;
  /**
   * The live process or thread the target names ("process 42", "thread 43"), if any:
   * one process has one pidfs inode, so two targets of an image may not name the same.
   */
  names(target: Target): string | undefined;
  /** How a file of this target comes back (see Planned). */
  plan(target: Target, file: PidfdFile, ctx: PlanContext): Planned | string;
  /** What verification expects the restored target to be. */
  expect(target: Target, ctx: ExpectContext): ExpectedTarget;
  /** `show`'s phrase for the target. */
  describe(target: Target, ctx: DescribeContext): string;
  /** The target as the example tree's expectations describe it. */
  example(target: Target): ExampleTarget;
}
