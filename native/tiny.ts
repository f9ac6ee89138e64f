/**
 * Tiny children: a process that never execs, made by clone3 from this (Node) process
 * and running only a short list of system calls, then dying with a chosen wait status.
 * They are restore's temporary processes x (wait for EOF on fd 0, then die) and its
 * zombie children (die at once, never reaped before teardown); docs/restore.md
 * "Temporary process x".
 *
 * The child shares our memory (CLONE_VM, no CLONE_THREAD: a process of its own, with
 * its own fd table, signal handlers, rlimits and thread group) but touches none of it
 * but one page, its **region**: the request it reads, the buffers its system calls use
 * and its stack (which it never writes: it makes no call and takes no signal frame).
 * Unlike posix_spawn's vfork (native/clone3.ts `spawn_at`) our thread is not suspended:
 * x must outlive the call. So the region is not reused while the child may still read it:
 * CLONE_CHILD_CLEARTID has the kernel write 0 into the region's tid word when the child
 * releases our memory (at its exit, as for a pthread), and only then does the region go
 * back to the pool. If we die first the memory stays mapped for the child (the kernel
 * frees an address space with its last user).
 *
 * What the child cannot do to us: it runs no JavaScript and no libc (so no lock, TLS,
 * malloc or rseq of ours is touched); it starts with every signal blocked (we block
 * them around clone3, as posix_spawn does) and never unblocks any but the one it dies
 * of, reset to SIG_DFL first, so no handler of Node's ever runs on it; the kernel gives
 * a CLONE_VM child no robust futex list, no rseq and no alternate signal stack of ours.
 *
 *   tiny_start(req):            ; rbx = req (218 bytes of x86-64; `gcc -c` of this)
 *     rt_sigprocmask(SIG_SETMASK, req+8 (all), req+16 (old), 8)
 *     r = clone3(req+24, 88)    ; struct clone_args; the child's rsp = its stack
 *     parent: rt_sigprocmask(SIG_SETMASK, req+16, NULL, 8); return r (pid or -errno)
 *     child (r == 0): r13 = 0; for each 48-byte entry {nr, a1, a2, a3, a4, flags} at
 *       *req until nr == -1:
 *         r13 = syscall(nr, flags & 4 ? r13 : a1, a2, a3, a4)
 *         flags & 2 and (r13 > 0 or r13 == -EINTR): run this entry again (read to EOF)
 *         flags & 1 and r13 < 0: *(req+112) = r13, *(req+120) = nr, stop
 *       then exit_group(127) forever (after the last entry, or a failed one)
 */
import koffi from 'koffi';
import { libc, check, errnoName } from './libc.js';
import { PcrError, SyscallError } from '../src/errors.js';

const CODE = Buffer.from(
  '53415441554889fbb80e000000bf02000000488d7308488d531041ba080000000f05b8b3010000488d7b18' +
    'be580000000f054885c074244989c5b80e000000bf02000000488d731031d241ba080000000f054c89e8' +
    '415d415c5bc34c8b234531ed498b04244883f8ff7461498b7c240849f74424280400000074034c89ef49' +
    '8b742410498b5424184d8b5424200f054989c549f744242802000000740b4885c07fbf4883f8fc74b948' +
    '85c0791949f744242801000000740e48894370498b042448894378eb064983c430eb95b8e7000000bf7f' +
    '0000000f05ebf2',
  'hex',
);

const PROT_READ = 1;
const PROT_WRITE = 2;
const PROT_EXEC = 4;
const MAP_PRIVATE = 0x02;
const MAP_ANONYMOUS = 0x20;
const PAGE = 4096;
const MAP_FAILED = 0xffffffffffffffffn;

const TINY_START = koffi.proto('long pcr_tiny_start(void *req)');

const SYS = {
  read: 0,
  rt_sigaction: 13,
  rt_sigprocmask: 14,
  dup2: 33,
  getpid: 39,
  kill: 62,
  prctl: 157,
  exit_group: 231,
  prlimit64: 302,
  close_range: 436,
} as const;

const MUST = 1n;
const REPEAT = 2n;
const PREVIOUS = 4n;

const CLONE_VM = 0x100n;
const CLONE_PIDFD = 0x1000n;
const CLONE_CHILD_CLEARTID = 0x200000n;
const SIGCHLD = 17n;
const SIG_SETMASK = 2n;
const PR_SET_NAME = 15n;
const PR_SET_DUMPABLE = 4n;
const RLIMIT_CORE = 4n;
const SIGKILL = 9;

// The region (one page): header, entries, data, stack.
const AT = {
  list: 0,
  maskAll: 8,
  maskOld: 16,
  cloneArgs: 24, // 88 bytes: flags, pidfd, child_tid, parent_tid, exit_signal, stack,
  // stack_size, tls, set_tid, set_tid_size, cgroup
  err: 112,
  errNr: 120,
  tid: 128, // u32, cleared by the kernel when the child releases our memory
  setTid: 132, // i32
  pidfd: 136, // i32, written by clone3 (CLONE_PIDFD)
  entries: 192, // 48 bytes each, up to the data
  comm: 1024, // 16 bytes
  sigDefault: 1040, // struct kernel_sigaction: SIG_DFL, no flags, empty mask (32 bytes)
  noCore: 1072, // struct rlimit {0, 0}
  maskButOne: 1088, // u64
  readBuf: 1152, // 64 bytes
  stack: 2048, // to the end of the page; never written by the child
} as const;
const MAX_ENTRIES = (AT.comm - AT.entries) / 48 - 1;

interface Region {
  ptr: unknown;
  address: bigint;
  view: Buffer;
}

let code: unknown;
/** Regions whose child may still read them, and regions free for reuse. */
const busy = new Set<Region>();
const free: Region[] = [];

function mapPage(prot: number): unknown {
  const ptr = libc.mmap(null, PAGE, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (koffi.address(ptr) === MAP_FAILED) check(-1, 'mmap', 'tiny child');
  return ptr;
}

function tinyStart(): unknown {
  if (code !== undefined) return code;
  const ptr = mapPage(PROT_READ | PROT_WRITE);
  Buffer.from(koffi.view(ptr, PAGE)).set(CODE);
  check(libc.mprotect(ptr, PAGE, PROT_READ | PROT_EXEC), 'mprotect', 'tiny_start code');
  code = ptr;
  return ptr;
}

/** Regions whose child released our memory (tid word 0) go back to the pool. */
export function sweepTinyRegions(): void {
  for (const r of busy) {
    if (r.view.readUInt32LE(AT.tid) === 0) {
      busy.delete(r);
      free.push(r);
    }
  }
}

/** How many regions a tiny child may still read (tests: none once all are dead). */
export function tinyRegionsInUse(): number {
  sweepTinyRegions();
  return busy.size;
}

function takeRegion(): Region {
  sweepTinyRegions();
  let r = free.pop();
  if (!r) {
    const ptr = mapPage(PROT_READ | PROT_WRITE);
    r = { ptr, address: koffi.address(ptr), view: Buffer.from(koffi.view(ptr, PAGE)) };
  }
  r.view.fill(0);
  return r;
}

/** How a tiny child dies: exit_group(code), or kill(getpid(), signal) with SIG_DFL. */
export type TinyDeath = { exitCode: number } | { signal: number };

export interface TinyOptions {
  death: TinyDeath;
  /**
   * Temporary process x: this fd of ours becomes the child's fd 0 (its only fd) and the
   * child dies only once read(0) gives EOF (or an error). Without it (a zombie) the
   * child closes every fd and dies at once.
   */
  waitOn?: number;
  /** The child's comm (PR_SET_NAME, at most 15 bytes kept); none: it keeps ours. */
  comm?: string;
  /** The pid the child must get in our pid namespace (clone3 set_tid; EEXIST if taken). */
  pid?: number;
  /** Also return a pidfd of the child (CLONE_PIDFD, close-on-exec). */
  pidfd?: boolean;
  /**
   * MEASUREMENT ONLY (bench/tiny.ts): a fork-like child with its own copy of our memory
   * instead of CLONE_VM; it also becomes non-dumpable. Not used by the restore.
   */
  ownMemory?: boolean;
}

export interface TinyChild {
  pid: number;
  /** -1 unless `pidfd` was asked for. */
  pidfd: number;
}

/**
 * Starts a tiny child (see the file's comment). Throws SyscallError('clone3') if the
 * clone fails: EEXIST when `pid` is taken, EPERM without the privilege to choose it.
 * A failure inside the child (dup2, close_range, setting up its death) makes it exit
 * with status 127, which whoever reaps it sees as the wrong status.
 */
export function spawnTiny(opts: TinyOptions): TinyChild {
  const entries: Array<[number, bigint, bigint, bigint, bigint, bigint]> = [];
  const r = takeRegion();
  const v = r.view;
  const at = (offset: number): bigint => r.address + BigInt(offset);
  const signal = 'signal' in opts.death ? opts.death.signal : 0;
  if (opts.waitOn !== undefined) {
    if (opts.waitOn !== 0) entries.push([SYS.dup2, BigInt(opts.waitOn), 0n, 0n, 0n, MUST]);
    entries.push([SYS.close_range, 1n, 0xffffffffn, 0n, 0n, MUST]);
  } else {
    entries.push([SYS.close_range, 0n, 0xffffffffn, 0n, 0n, MUST]);
  }
  if (opts.ownMemory) entries.push([SYS.prctl, PR_SET_DUMPABLE, 0n, 0n, 0n, MUST]);
  if (opts.comm !== undefined) {
    v.write(opts.comm.slice(0, 15), AT.comm, 15, 'utf8');
    entries.push([SYS.prctl, PR_SET_NAME, at(AT.comm), 0n, 0n, 0n]);
  }
  if (signal > 0) {
    // No core file (the core bit is refused upstream): RLIMIT_CORE 0 is ours alone (no
    // CLONE_THREAD: rlimits are per process).
    entries.push([SYS.prlimit64, 0n, RLIMIT_CORE, at(AT.noCore), 0n, MUST]);
    if (signal !== SIGKILL) {
      entries.push([SYS.rt_sigaction, BigInt(signal), at(AT.sigDefault), 0n, 8n, MUST]);
    }
  }
  if (opts.waitOn !== undefined) {
    entries.push([SYS.read, 0n, at(AT.readBuf), 64n, 0n, REPEAT]);
  }
  if (signal > 0) {
    // Every signal stayed blocked while it waited; now only its own is let through.
    v.writeBigUInt64LE(~(1n << BigInt(signal - 1)) & 0xffffffffffffffffn, AT.maskButOne);
    entries.push([SYS.rt_sigprocmask, SIG_SETMASK, at(AT.maskButOne), 0n, 8n, MUST]);
    entries.push([SYS.getpid, 0n, 0n, 0n, 0n, 0n]);
    entries.push([SYS.kill, 0n, BigInt(signal), 0n, 0n, PREVIOUS]);
    // The signal is delivered on the return from kill; exit_group(127) after the list
    // is only a fallback that nobody would take for the recorded status.
  } else {
    const code = 'exitCode' in opts.death ? opts.death.exitCode : 127;
    entries.push([SYS.exit_group, BigInt(code), 0n, 0n, 0n, 0n]);
  }
  if (entries.length > MAX_ENTRIES)
    throw new PcrError('PCR_ERR_INTERNAL', 'tiny child: too many steps');
  entries.forEach((e, i) => {
    for (let k = 0; k < 6; k++) v.writeBigInt64LE(BigInt(e[k]!), AT.entries + 48 * i + 8 * k);
  });
  v.writeBigInt64LE(-1n, AT.entries + 48 * entries.length);

  v.writeBigUInt64LE(at(AT.entries), AT.list);
  v.writeBigUInt64LE(0xffffffffffffffffn, AT.maskAll);
  const a = AT.cloneArgs;
  let flags = opts.ownMemory ? 0n : CLONE_VM | CLONE_CHILD_CLEARTID;
  if (opts.pidfd) {
    flags |= CLONE_PIDFD;
    v.writeBigUInt64LE(at(AT.pidfd), a + 8);
  }
  v.writeBigUInt64LE(flags, a);
  v.writeBigUInt64LE(at(AT.tid), a + 16); // child_tid
  v.writeBigUInt64LE(SIGCHLD, a + 32); // exit_signal
  v.writeBigUInt64LE(at(AT.stack), a + 40); // stack
  v.writeBigUInt64LE(BigInt(PAGE - AT.stack), a + 48); // stack_size
  if (opts.pid !== undefined) {
    v.writeInt32LE(opts.pid, AT.setTid);
    v.writeBigUInt64LE(at(AT.setTid), a + 64); // set_tid
    v.writeBigUInt64LE(1n, a + 72); // set_tid_size: one level, the child's namespace
  }
  v.writeUInt32LE(1, AT.tid);

  let pid: number;
  try {
    pid = Number(koffi.call(tinyStart(), TINY_START, r.ptr));
  } catch (err) {
    free.push(r);
    throw err;
  }
  if (pid < 0) {
    free.push(r);
    const what = opts.pid === undefined ? 'tiny child' : `tiny child at set_tid ${opts.pid}`;
    throw new SyscallError('clone3', -pid, errnoName(-pid), what);
  }
  // A fork-like child reads its own copy of the region: ours is free at once.
  if (opts.ownMemory) free.push(r);
  else busy.add(r);
  return { pid, pidfd: opts.pidfd ? v.readInt32LE(AT.pidfd) : -1 };
}
