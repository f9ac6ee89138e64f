/**
 * How an opener makes one file (the plan's vocabulary that target kinds produce). Each
 * strategy is owned by one target kind module (see kind.ts, `OpenStrategy`); the plan,
 * the wire codec and the worker look it up in the registry instead of switching on it.
 */

/** How the opener makes one file. `flags` of the file are on the step, not here. */
export type OpenHow =
  /** pidfd_open(restored pid of `taskPid`, flags): an in-tree task, alive or zombie. */
  | { strategy: 'pidfd-open'; taskPid: number }
  /** pidfd_open(restored tid, flags incl. PIDFD_THREAD): a live non-leader thread of `taskPid`. */
  | { strategy: 'thread-open'; taskPid: number; tid: number }
  /**
   * pidfd_open(pid, flags) of a process outside the tree, then prove identity: the new
   * pidfd's ino must equal `ino` and the running boot must be `bootId`. Without
   * PIDFD_THREAD, open_by_handle_at(FD_PIDFS_ROOT, handle(ino)) is an equivalent, race-free
   * way; it fails with ESTALE once that process is gone.
   */
  | { strategy: 'external-reopen'; pid: number; ino: string; bootId: string; zombie: boolean }
  /**
   * pidfd_open(x, flags) where x is the temporary process of dead group `groupId`, made by
   * this task (the group's creator) in the same phase. With PIDFD_THREAD in flags it is a
   * thread pidfd of x's leader: once dead, a thread's pidfd shows the same (Pid -1, the
   * recorded exit code).
   */
  | { strategy: 'temp'; groupId: number };

export type Strategy = OpenHow['strategy'];

/** The OpenHow of one strategy. */
export type HowOf<S extends Strategy> = Extract<OpenHow, { strategy: S }>;

export type ExitStatusSource =
  /** The image recorded the status (PIDFD_INFO_EXIT at dump). */
  | 'recorded'
  /**
   * An external target planned as dead (`externalDead`): its status is unknown, x is
   * killed by SIGKILL (status 9) and verification expects exactly that.
   */
  | 'assumed-sigkill';
