/**
 * Spawning a child at a chosen pid: clone3 with `set_tid` (Linux ≥ 5.5; needs
 * CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN over the pid namespace), with posix_spawn's
 * semantics: CLONE_VM | CLONE_VFORK, the child runs no JavaScript and no libc, only a
 * list of system calls (signal dispositions reset, fds dup2'd and closed, setsid, signal
 * mask cleared) and execve; the parent thread is suspended until the child has exec'd or
 * died, so the list and the buffers it points to are safe to share.
 *
 * The child part cannot be JavaScript (a copy of a multi-threaded Node process must not
 * run it) and koffi cannot make a C function at run time, so it is 168 bytes of x86-64
 * machine code (`spawn_at`, source in the comment below), mapped read+exec once and
 * called through koffi like any C function. Everything it needs is in one request
 * buffer built here.
 *
 *   spawn_at(req):              ; rbx = req
 *     rt_sigprocmask(SIG_SETMASK, req+8 (all), req+16 (old), 8)   ; no handler in the child
 *     r = clone3(req+24, 88)                                      ; struct clone_args
 *     child (r == 0): for each 48-byte entry {nr, a1, a2, a3, a4, mustSucceed} at *req
 *       until nr == -1: r = syscall(nr, a1..a4); if r < 0 && mustSucceed:
 *       *(req+112) = r; exit(127). The last entry is execve.
 *     parent: rt_sigprocmask(SIG_SETMASK, req+16, NULL, 8); return r (pid or -errno)
 */
import koffi from 'koffi';
import { SYS } from './sysno.js';
import { codePage } from './pages.js';
import { SyscallError } from '../src/errors.js';
import { errnoName } from './libc.js';
import { waitpid } from './process.js';

const CODE = Buffer.from(
  '53415441554889fbb80e000000bf02000000488d7308488d531041ba080000000f05b8b3010000488d7b18' +
    'be580000000f054885c074244989c5b80e000000bf02000000488d731031d241ba080000000f054c89e8' +
    '415d415c5bc34c8b23498b04244883f8ff7432498b7c2408498b742410498b5424184d8b5424200f0548' +
    '85c0791149f744242801000000740648894370eb064983c430ebc4b83c000000bf7f0000000f05ebf2',
  'hex',
);

let spawnAtCode: unknown;

const code = (): unknown => (spawnAtCode ??= codePage(CODE, 'spawn_at code'));

const SPAWN_AT = koffi.proto('long pcr_spawn_at(void *req)');

const CLONE_VM = 0x100n;
const CLONE_NEWNS = 0x20000n;
const CLONE_NEWPID = 0x20000000n;
const CLONE_VFORK = 0x4000n;
const SIGCHLD = 17n;
const SIG_SETMASK = 2;

export interface SpawnAtOptions {
  /** The pid the child must get, in our pid namespace (none: any). */
  pid?: number;
  /**
   * The child is the init (pid 1) of a new pid namespace, in a new mount namespace
   * (CLONE_NEWPID | CLONE_NEWNS: it can mount its own /proc): restore --pidns new.
   */
  newPidNs?: boolean;
  path: string;
  argv: readonly string[];
  env: Readonly<Record<string, string>>;
  /** [from, to] pairs applied in order with dup2 in the child (dup2 clears cloexec). */
  dup2?: ReadonlyArray<readonly [number, number]>;
  /** fds closed in the child after the dup2s (errors ignored). */
  close?: readonly number[];
  /** Close every fd ≥ this number in the child, after the dup2s. */
  closeFrom?: number;
  setsid?: boolean;
}

/** A NUL-terminated C string and a NULL-terminated pointer array, kept alive by `keep`. */
function cString(s: string, keep: Buffer[]): bigint {
  const b = Buffer.from(`${s}\0`);
  keep.push(b);
  return koffi.address(b);
}

function cArray(list: readonly string[], keep: Buffer[]): bigint {
  const b = Buffer.alloc(8 * (list.length + 1));
  list.forEach((s, i) => b.writeBigUInt64LE(cString(s, keep), 8 * i));
  keep.push(b);
  return koffi.address(b);
}

/**
 * Spawns `path` as a child at pid `opts.pid`. Throws SyscallError('clone3') with EEXIST
 * when the pid is in use, EPERM without the privilege; a failed step in the child
 * (dup2, setsid, execve) is reaped and thrown with its errno.
 */
export function spawnAt(opts: SpawnAtOptions): number {
  const keep: Buffer[] = [];
  const entries: Array<[number, bigint, bigint, bigint, bigint, boolean]> = [];
  const dfl = Buffer.alloc(32); // struct kernel_sigaction: SIG_DFL, no flags, empty mask
  keep.push(dfl);
  for (let sig = 1; sig <= 64; sig++) {
    if (sig === 9 || sig === 19) continue;
    entries.push([SYS.rt_sigaction, BigInt(sig), koffi.address(dfl), 0n, 8n, false]);
  }
  for (const [from, to] of opts.dup2 ?? []) {
    entries.push([SYS.dup2, BigInt(from), BigInt(to), 0n, 0n, true]);
  }
  for (const fd of opts.close ?? []) entries.push([SYS.close, BigInt(fd), 0n, 0n, 0n, false]);
  if (opts.closeFrom !== undefined) {
    entries.push([SYS.close_range, BigInt(opts.closeFrom), 0xffffffffn, 0n, 0n, true]);
  }
  if (opts.setsid) entries.push([SYS.setsid, 0n, 0n, 0n, 0n, true]);
  const empty = Buffer.alloc(8);
  keep.push(empty);
  entries.push([SYS.rt_sigprocmask, BigInt(SIG_SETMASK), koffi.address(empty), 0n, 8n, true]);
  const env = Object.entries(opts.env).map(([k, v]) => `${k}=${v}`);
  entries.push([
    SYS.execve,
    cString(opts.path, keep),
    cArray(opts.argv, keep),
    cArray(env, keep),
    0n,
    true,
  ]);
  const list = Buffer.alloc(48 * (entries.length + 1));
  entries.forEach((e, i) => {
    for (let k = 0; k < 5; k++)
      list.writeBigInt64LE(BigInt(e[k] as bigint | number), 48 * i + 8 * k);
    list.writeBigInt64LE(e[5] ? 1n : 0n, 48 * i + 40);
  });
  list.writeBigInt64LE(-1n, 48 * entries.length);
  const setTid = Buffer.alloc(4);
  setTid.writeInt32LE(opts.pid ?? 0, 0);
  const req = Buffer.alloc(120);
  req.writeBigUInt64LE(koffi.address(list), 0);
  req.writeBigUInt64LE(0xffffffffffffffffn, 8); // every signal blocked around clone3
  const ns = opts.newPidNs ? CLONE_NEWPID | CLONE_NEWNS : 0n;
  req.writeBigUInt64LE(CLONE_VM | CLONE_VFORK | ns, 24); // flags
  req.writeBigUInt64LE(SIGCHLD, 24 + 32); // exit_signal
  if (opts.pid !== undefined) {
    req.writeBigUInt64LE(koffi.address(setTid), 24 + 64); // set_tid
    req.writeBigUInt64LE(1n, 24 + 72); // set_tid_size: one level, the child's namespace
  }
  // Everything the child reads must stay reachable until the call returns: hang it on
  // req, which is read after it (a local alone may be dead for the optimizing compiler).
  keep.push(list, setTid);
  Object.defineProperty(req, 'keep', { value: keep });
  const r = Number(koffi.call(code(), SPAWN_AT, req));
  if (r < 0) {
    const what = opts.pid === undefined ? 'new pid namespace' : `set_tid ${opts.pid}`;
    throw new SyscallError('clone3', -r, errnoName(-r), what);
  }
  const childErr = Number(req.readBigInt64LE(112));
  if (childErr < 0) {
    try {
      waitpid(r, 0);
    } catch {
      // reaped already: cannot be, it is our child
    }
    throw new SyscallError(
      'spawn (child setup or execve)',
      -childErr,
      errnoName(-childErr),
      opts.path,
    );
  }
  return r;
}
