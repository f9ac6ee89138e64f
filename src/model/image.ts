/**
 * The in-memory image: what `dump` produces and `restore` consumes. It mirrors
 * proto/image.proto field by field, with inode numbers as bigint (they are 64-bit per-boot
 * counters; never narrow them). The codec (codec.ts) converts to and from protobuf and
 * validates; nothing else touches the generated protobuf classes.
 */

export const FORMAT_VERSION = 1;

export type TaskState = 'running' | 'stopped' | 'zombie';

export type TargetKind = 'in-tree-alive' | 'in-tree-zombie' | 'dead' | 'thread' | 'external';

export interface HostContext {
  bootId: string;
  kernelRelease: string;
  dumpTimeMs: number;
  toolVersion: string;
  freezeMethod: string;
  hostname: string;
}

export interface FdEntry {
  fd: number;
  /** PidfdFile.id of the open file description this fd refers to (looked up by id). */
  fileId: number;
  cloexec: boolean;
}

export interface Task {
  pid: number;
  ppid: number;
  tgid: number;
  /** Leader first. */
  tids: number[];
  comm: string;
  argv: string[];
  state: TaskState;
  procState: string;
  /** Wait status word of a zombie (/proc/P/stat field 52), when known. */
  exitStatus?: number;
  nsPids: number[];
  /** Pidfds only, sorted by fd number. */
  fds: FdEntry[];
}

/** One open file description (kcmp class) that is a pidfd. */
export interface PidfdFile {
  id: number;
  /**
   * f_flags (octal in fdinfo) without the per-fd O_CLOEXEC; O_CLOEXEC only when the file
   * itself carries it (opened by pidfs handle with O_CLOEXEC; F_GETFL shows it).
   */
  flags: number;
  ino: bigint;
}

export interface Target {
  ino: bigint;
  kind: TargetKind;
  /** fdinfo Pid at dump time; -1 once reaped. */
  pid: number;
  nsPids: number[];
  /** in-tree-*: the task's pid; thread: pid of the owning task. 0 otherwise. */
  taskPid: number;
  /** thread, or an external thread: the thread id. 0 otherwise. */
  tid: number;
  /** dead: wait status word from PIDFD_INFO_EXIT, when the kernel had one. */
  exitStatus?: number;
  /** dead: cgroup v2 id the target died in (informative). */
  exitCgroupId: bigint;
  /** external thread: its thread-group leader's pid. 0 otherwise. */
  tgid: number;
  /** external: it was a zombie at dump time. */
  zombie: boolean;
  comm: string;
}

/**
 * A target with every kind-specific field at its empty value: callers give ino, kind, pid
 * and the fields their kind uses (see Target).
 */
export function makeTarget(fields: Pick<Target, 'ino' | 'kind' | 'pid'> & Partial<Target>): Target {
  return {
    nsPids: [],
    taskPid: 0,
    tid: 0,
    exitCgroupId: 0n,
    tgid: 0,
    zombie: false,
    comm: '',
    ...fields,
  };
}

export interface Image {
  formatVersion: number;
  host: HostContext;
  rootPid: number;
  /** Parents before children (pre-order from the root). */
  tasks: Task[];
  files: PidfdFile[];
  targets: Target[];
}

/** Open-file status flag bits that matter for pidfds (fdinfo "flags" is octal). */
export const FLAGS = {
  O_ACCMODE: 0o3,
  O_RDWR: 0o2,
  O_EXCL: 0o200, // = PIDFD_THREAD
  O_NONBLOCK: 0o4000, // = PIDFD_NONBLOCK
  O_LARGEFILE: 0o100000,
  O_CLOEXEC: 0o2000000,
} as const;
