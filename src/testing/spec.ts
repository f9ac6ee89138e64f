/**
 * The declarative description of an example process tree holding pidfds. A spec says
 * WHAT the tree holds; plan.ts decides in which order the tasks make it; builder.ts
 * runs the plan on real processes; expected.ts says what a correct dump of the built
 * tree must contain.
 *
 *     root ── a ── a1            TaskSpec: a Node task process (task-main.js), or a
 *          └─ z (zombie)        zombie (a `sh` that exited and is never reaped).
 *
 * Every pidfd is either opened anew (`target`) or shares the open file description of
 * another pidfd of the spec (`sameFileAs`), which the builder obtains by dup, by fork
 * inheritance (spawn with dup2) or by SCM_RIGHTS, exactly as a real program would.
 */

/** A wait status word as waitpid(2) reports it: `code << 8` for exit, `sig` for a signal. */
export type WaitStatus = number;

/** Wait status of `exit(code)`. */
export const exited = (code: number): WaitStatus => (code & 0xff) << 8;
/** Wait status of death by signal `sig` (no core dump). */
export const signaled = (sig: number): WaitStatus => sig & 0x7f;

export interface TreeSpec {
  root: TaskSpec;
  /** Processes outside the tree that tree tasks hold pidfds to. */
  externals?: ExternalSpec[];
}

export interface TaskSpec {
  /** Unique within the spec (tasks and externals share one name space). */
  name: string;
  children?: TaskSpec[];
  /**
   * The task exits with this status right after it is spawned and its parent never
   * reaps it. A zombie holds no fds and has no children.
   */
  zombie?: { status: WaitStatus };
  /** Extra live threads (worker_threads) that `{ thread }` targets may name by index. */
  threads?: number;
  pidfds?: PidfdSpec[];
}

export interface ExternalSpec {
  name: string;
  /** The external exited with this status and its parent (the builder) has not reaped it. */
  zombie?: { status: WaitStatus };
}

/** What a newly opened pidfd refers to. */
export type TargetSpec =
  /** A task of the tree (alive, or zombie if that task is a zombie). */
  | { task: string }
  /** Live non-leader thread `index` (0-based, < task.threads) of a task; implies PIDFD_THREAD. */
  | { thread: { task: string; index: number } }
  /** A process outside the tree. */
  | { external: string }
  /** A process that exited with `status` and was reaped (fdinfo Pid: -1). */
  | { dead: { status: WaitStatus } }
  /** A non-leader thread of the holder that has ended; implies PIDFD_THREAD. */
  | { deadThread: true };

/** One pidfd of a task. Exactly one of `target` and `sameFileAs`. */
export interface PidfdSpec {
  /** The fd number in the holder (any free number ≥ 3). */
  fd: number;
  target?: TargetSpec;
  /** Share the open file description of another pidfd of the spec. */
  sameFileAs?: PidfdRef;
  /**
   * How the shared file arrives. Default: 'dup' within one task, 'fork' when `sameFileAs`
   * names the parent task, 'scm-rights' otherwise. 'fork' needs the parent.
   */
  via?: 'dup' | 'fork' | 'scm-rights';
  /** Close-on-exec bit of this fd (per fd). Default true (what pidfd_open gives). */
  cloexec?: boolean;
  /** PIDFD_NONBLOCK (= O_NONBLOCK). New opens only. */
  nonblock?: boolean;
  /** PIDFD_THREAD (= O_EXCL) on a process target. New opens only. */
  thread?: boolean;
  /**
   * Open the pidfd a second time through /proc/self/fd/N with this access mode (a new
   * open file description; the kernel adds O_LARGEFILE). Default: the pidfd_open file
   * itself (O_RDWR). New opens of process targets only, not with `thread`.
   * 'by-handle': open_by_handle_at(pidfs handle, O_RDWR | O_CLOEXEC) instead, a file
   * whose f_flags keep O_CLOEXEC (fdinfo then shows every fd of it close-on-exec).
   */
  accessMode?: 'rdonly' | 'wronly' | 'rdwr' | 'by-handle';
}

export interface PidfdRef {
  task: string;
  fd: number;
}

/** `task:fd`, the key of a pidfd within a spec. */
export const refKey = (r: PidfdRef): string => `${r.task}:${r.fd}`;
