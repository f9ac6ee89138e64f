/** Processes: posix_spawn, waitid(P_PIDFD), prctl, ptrace seize/interrupt/detach, kill. */
import { libc, check, checkReturned, fail, addressOf } from './libc.js';
import { SYS } from './sysno.js';
import { SyscallError } from '../src/errors.js';
import koffi from 'koffi';

const POSIX_SPAWN_SETSIGDEF = 0x04;
const POSIX_SPAWN_SETSIGMASK = 0x08;
const POSIX_SPAWN_SETSID = 0x80;
const SIGSET_BYTES = 128;

export interface SpawnOptions {
  /** Absolute path of the program. */
  path: string;
  argv: readonly string[];
  env?: Readonly<Record<string, string>>;
  /** [from, to] pairs applied in order with dup2 in the child (dup2 clears cloexec). */
  dup2?: ReadonlyArray<readonly [number, number]>;
  /** Close every fd ≥ this number in the child, after the dup2s. */
  closeFrom?: number;
  /** fds closed in the child after the dup2s (not open there: ignored by glibc). */
  close?: readonly number[];
  /** Start a new session (the child is not in our process group). */
  setsid?: boolean;
}

/**
 * posix_spawn (≈0.3 ms, vs ≈5 ms for child_process.spawn from a large Node process).
 * The child starts with default signal dispositions and an empty signal mask. Node does
 * not reap it: reap it with waitPidfd.
 */
export function spawn(opts: SpawnOptions): number {
  const fa = Buffer.alloc(80);
  const attr = Buffer.alloc(336);
  checkReturned(libc.posix_spawn_file_actions_init(fa), 'posix_spawn_file_actions_init');
  checkReturned(libc.posix_spawnattr_init(attr), 'posix_spawnattr_init');
  try {
    for (const [from, to] of opts.dup2 ?? []) {
      checkReturned(
        libc.posix_spawn_file_actions_adddup2(fa, from, to),
        'posix_spawn_file_actions_adddup2',
      );
    }
    for (const fd of opts.close ?? []) {
      checkReturned(
        libc.posix_spawn_file_actions_addclose(fa, fd),
        'posix_spawn_file_actions_addclose',
      );
    }
    if (opts.closeFrom !== undefined) {
      checkReturned(
        libc.posix_spawn_file_actions_addclosefrom_np(fa, opts.closeFrom),
        'posix_spawn_file_actions_addclosefrom_np',
      );
    }
    const all = Buffer.alloc(SIGSET_BYTES, 0xff);
    const none = Buffer.alloc(SIGSET_BYTES, 0);
    checkReturned(libc.posix_spawnattr_setsigdefault(attr, all), 'posix_spawnattr_setsigdefault');
    checkReturned(libc.posix_spawnattr_setsigmask(attr, none), 'posix_spawnattr_setsigmask');
    const flags =
      POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | (opts.setsid ? POSIX_SPAWN_SETSID : 0);
    checkReturned(libc.posix_spawnattr_setflags(attr, flags), 'posix_spawnattr_setflags');
    const env = Object.entries(opts.env ?? process.env).map(([k, v]) => `${k}=${v}`);
    const pid = Buffer.alloc(4);
    checkReturned(
      libc.posix_spawn(pid, opts.path, fa, attr, [...opts.argv, null], [...env, null]),
      'posix_spawn',
      opts.path,
    );
    return pid.readInt32LE(0);
  } finally {
    libc.posix_spawn_file_actions_destroy(fa);
    libc.posix_spawnattr_destroy(attr);
  }
}

const P_PIDFD = 3;
export const WEXITED = 4;
export const WSTOPPED = 2;
export const WNOHANG = 1;
export const WNOWAIT = 0x01000000;
const CLD_EXITED = 1;
const CLD_KILLED = 2;
const CLD_DUMPED = 3;

export interface WaitResult {
  pid: number;
  /** The wait status word as waitpid(2) would give it: code << 8, or signal | 0x80 core. */
  status: number;
  /** CLD_* code from siginfo. */
  code: number;
}

/** waitid(P_PIDFD, pidfd, options); null with WNOHANG when nothing changed. */
export function waitPidfd(pidfd: number, options = WEXITED): WaitResult | null {
  const info = Buffer.alloc(128);
  check(libc.waitid(P_PIDFD, pidfd, info, options), 'waitid(P_PIDFD)', `pidfd ${pidfd}`);
  const pid = info.readInt32LE(16);
  if (pid === 0) return null;
  const code = info.readInt32LE(8);
  const st = info.readInt32LE(24);
  return { pid, code, status: statusWord(code, st) };
}

function statusWord(code: number, st: number): number {
  if (code === CLD_EXITED) return (st & 0xff) << 8;
  if (code === CLD_KILLED) return st & 0x7f;
  if (code === CLD_DUMPED) return (st & 0x7f) | 0x80;
  return ((st & 0xff) << 8) | 0x7f; // stopped/continued
}

export const __WALL = 0x40000000;

/** waitpid(pid, &status, options): [pid, status]; pid 0 with WNOHANG when nothing changed. */
export function waitpid(pid: number, options: number): [number, number] {
  const st = Buffer.alloc(4);
  const r = check(libc.waitpid(pid, st, options), 'waitpid', `pid ${pid}`);
  return [r, st.readInt32LE(0)];
}

export const PR_SET_PDEATHSIG = 1;
export const PR_SET_CHILD_SUBREAPER = 36;

export function prctl(option: number, arg: number): void {
  check(
    libc.prctl(option, 'ulong', arg, 'ulong', 0, 'ulong', 0, 'ulong', 0),
    'prctl',
    `option ${option}`,
  );
}

export function kill(pid: number, sig: number): void {
  check(libc.kill(pid, sig), 'kill', `pid ${pid}`);
}

const PTRACE_DETACH = 17;
const PTRACE_SEIZE = 0x4206;
const PTRACE_INTERRUPT = 0x4207;

function ptrace(req: number, pid: number, data: number, what: string): void {
  const r = Number(libc.syscall(SYS.ptrace, 'long', req, 'long', pid, 'long', 0, 'long', data));
  if (r === -1) fail(what, `task ${pid}`);
}

/** PTRACE_SEIZE: attach without stopping and without sending any signal. */
export const ptraceSeize = (tid: number): void =>
  ptrace(PTRACE_SEIZE, tid, 0, 'ptrace(PTRACE_SEIZE)');
/** PTRACE_INTERRUPT: put a seized task into a ptrace-stop (reported to us by waitpid). */
export const ptraceInterrupt = (tid: number): void =>
  ptrace(PTRACE_INTERRUPT, tid, 0, 'ptrace(PTRACE_INTERRUPT)');
/** PTRACE_DETACH with signal `sig` (0: none): the task resumes. */
export const ptraceDetach = (tid: number, sig = 0): void =>
  ptrace(PTRACE_DETACH, tid, sig, 'ptrace(PTRACE_DETACH)');

export function gettid(): number {
  return Number(libc.syscall(SYS.gettid));
}

export function getpid(): number {
  return libc.getpid();
}

const RLIMIT_CORE = 4;

export function setCoreLimit(bytes: bigint): void {
  const r = Buffer.alloc(16);
  r.writeBigUInt64LE(bytes, 0);
  r.writeBigUInt64LE(bytes, 8);
  check(libc.setrlimit(RLIMIT_CORE, r), 'setrlimit(RLIMIT_CORE)');
}

export function lastErrno(): number {
  return koffi.errno();
}

const PR_GET_CHILD_SUBREAPER = 37;

/** prctl(PR_GET_CHILD_SUBREAPER): whether this process is a child subreaper. */
export function getChildSubreaper(): boolean {
  const out = Buffer.alloc(4);
  check(
    libc.prctl(PR_GET_CHILD_SUBREAPER, 'void *', out, 'ulong', 0, 'ulong', 0, 'ulong', 0),
    'prctl(PR_GET_CHILD_SUBREAPER)',
  );
  return out.readInt32LE(0) !== 0;
}

const SIGCHLD = 17;
/** struct clone_args up to set_tid_size (CLONE_ARGS_SIZE_VER1). */
const CLONE_ARGS_SIZE_VER1 = 80;

/**
 * clone3 asking for pid `tid` (set_tid, one namespace level), for probing only: with a
 * `tid` that is in use no process is created, and the kernel's answer tells whether
 * this process may choose pids: EEXIST (it may, CAP_CHECKPOINT_RESTORE or
 * CAP_SYS_ADMIN over the pid namespace: the pid is just taken) or EPERM (it may not).
 * Always throws the SyscallError of clone3; should a process be created all the same,
 * the child exits at once and is reaped, and EEXIST is reported for it.
 */
export function clone3SetTidProbe(tid: number): never {
  const setTid = Buffer.alloc(4);
  setTid.writeInt32LE(tid, 0);
  const args = Buffer.alloc(CLONE_ARGS_SIZE_VER1);
  args.writeBigUInt64LE(BigInt(SIGCHLD), 32); // exit_signal
  args.writeBigUInt64LE(addressOf(setTid), 64); // set_tid
  args.writeBigUInt64LE(1n, 72); // set_tid_size
  const r = Number(libc.syscall(SYS.clone3, 'void *', args, 'ulong', CLONE_ARGS_SIZE_VER1));
  if (r === 0) libc.syscall(SYS.exit_group, 'int', 0); // the child: never runs JavaScript
  if (r > 0) {
    waitpid(r, 0);
    throw new SyscallError('clone3', 17, 'EEXIST', `set_tid ${tid}: a process was created`);
  }
  fail('clone3', `set_tid ${tid}`);
}
