/**
 * Tiny children: a process that never execs, made by clone3 from this (Node) process
 * and running only a short list of system calls, then dying with a chosen wait status.
 * They are restore's temporary processes x (die at once, reaped by their creator in
 * kill-temp) and its zombie children (die at once, never reaped before teardown);
 * docs/restore.md "Temporary process x". The wait for EOF on fd 0 (`waitOn`) is what x
 * did until "Session 7c"; only bench/tiny.ts uses it now.
 *
 * The child shares our memory (CLONE_VM, no CLONE_THREAD: a process of its own, with
 * its own fd table, signal handlers, rlimits and thread group) but touches none of it
 * but one page, its **region**: the request it reads, the buffers its system calls use
 * and its stack (which it never writes: it makes no call and takes no signal frame).
 * Unlike posix_spawn's vfork (native/clone3.ts `spawn_at`) our thread is not suspended:
 * the child may outlive the call. So the region is not reused while the child may still read it:
 * CLONE_CHILD_CLEARTID has the kernel write 0 into the region's tid word when the child
 * releases our memory (at its exit, as for a pthread), and only then does the region go
 * back to the pool. If we die first the memory stays mapped for the child (the kernel
 * frees an address space with its last user).
 *
 * What the child cannot do to us: it runs no JavaScript and no libc (so no lock, TLS,
 * malloc or rseq of ours is touched); it has none of Node's signal handlers
 * (CLONE_CLEAR_SIGHAND), starts with every signal blocked (we block them around clone3,
 * as posix_spawn does) and never unblocks any but the one it dies of, last; the
 * kernel gives a CLONE_VM child no robust futex list, no rseq and no alternate signal
 * stack of ours.
 *
 * Unlike a posix_spawn child, which has exec'd (dropping every close-on-exec fd) by the
 * time the call returns, a tiny child holds a copy of our fd table from the clone until
 * it first runs and closes them (close_range, its first step): microseconds, or a
 * scheduler tick on a loaded machine. Nothing of ours depends on that window (with
 * `waitOn`, a copy of another child's control end only delays that child's EOF).
 *
 *   tiny_start(req):            ; rbx = req (218 bytes of x86-64, source: native/tiny.S)
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
import { errnoName } from './libc.js';
import { SYS } from './sysno.js';
import { codePage, mapPage, PAGE } from './pages.js';
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

/** The machine code, as hex (test/system/tiny-children.test.ts assembles native/tiny.S). */
export const tinyStartHex = (): string => CODE.toString('hex');

const TINY_START = koffi.proto('long pcr_tiny_start(void *req)');

const MUST = 1;
const REPEAT = 2;
const PREVIOUS = 4;

const CLONE_VM = 0x100;
const CLONE_PIDFD = 0x1000;
const CLONE_CHILD_CLEARTID = 0x200000;
/** Every handler of ours is SIG_DFL in the child (ignored signals stay ignored). */
const CLONE_CLEAR_SIGHAND = 0x100000000;
const SIGCHLD = 17;
const SIG_SETMASK = 2;
const PR_SET_NAME = 15;
const PR_SET_DUMPABLE = 4;
const RLIMIT_CORE = 4;
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
  /** Its address (below 2^47: exact as a Number). */
  address: number;
  view: Buffer;
  /** The same page as 32-bit words, for 64-bit fields written without BigInt. */
  words: Uint32Array;
}

/**
 * Writes the 64-bit field at `offset` (a multiple of 8) from a Number: an address or a
 * small integer, two's complement for a negative one. (BigInt writes cost a cold worker
 * ≈ 0.2 ms for the ≈ 40 fields of one request; these cost nothing measurable.)
 */
function put(r: Region, offset: number, n: number): void {
  const i = offset >> 2;
  r.words[i] = n >>> 0;
  r.words[i + 1] = n < 0 ? 0xffffffff : Math.floor(n / 0x100000000);
}

let code: unknown;
/** Regions whose child may still read them, and regions free for reuse. */
const busy = new Set<Region>();
const free: Region[] = [];

const tinyStart = (): unknown => (code ??= codePage(CODE, 'tiny_start code'));

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
    const ptr = mapPage('tiny child');
    const page = koffi.view(ptr, PAGE);
    const address = Number(koffi.address(ptr));
    r = { ptr, address, view: Buffer.from(page), words: new Uint32Array(page) };
  }
  r.view.fill(0);
  return r;
}

/** How a tiny child dies: exit_group(code), or kill(getpid(), signal) with SIG_DFL. */
export type TinyDeath = { exitCode: number } | { signal: number };

export interface TinyOptions {
  death: TinyDeath;
  /**
   * (bench/tiny.ts; the temporary process x until "Session 7c"): this fd of ours becomes
   * the child's fd 0 (its only fd) and the child dies only once read(0) gives EOF (or an
   * error). Without it (x, a zombie) the child closes every fd and dies at once.
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
  type Entry = [nr: number, a1: number, a2: number, a3: number, a4: number, flags: number];
  const entries: Entry[] = [];
  const r = takeRegion();
  const at = (offset: number): number => r.address + offset;
  const signal = 'signal' in opts.death ? opts.death.signal : 0;
  if (opts.waitOn !== undefined) {
    if (opts.waitOn !== 0) entries.push([SYS.dup2, opts.waitOn, 0, 0, 0, MUST]);
    entries.push([SYS.close_range, 1, 0xffffffff, 0, 0, MUST]);
  } else {
    entries.push([SYS.close_range, 0, 0xffffffff, 0, 0, MUST]);
  }
  if (opts.ownMemory) entries.push([SYS.prctl, PR_SET_DUMPABLE, 0, 0, 0, MUST]);
  if (opts.comm !== undefined) {
    r.view.write(opts.comm.slice(0, 15), AT.comm, 15, 'utf8');
    entries.push([SYS.prctl, PR_SET_NAME, at(AT.comm), 0, 0, 0]);
  }
  if (signal > 0) {
    // No core file (the core bit is refused upstream): RLIMIT_CORE 0 is ours alone (no
    // CLONE_THREAD: rlimits are per process).
    entries.push([SYS.prlimit64, 0, RLIMIT_CORE, at(AT.noCore), 0, MUST]);
    if (signal !== SIGKILL) {
      entries.push([SYS.rt_sigaction, signal, at(AT.sigDefault), 0, 8, MUST]);
    }
  }
  if (opts.waitOn !== undefined) entries.push([SYS.read, 0, at(AT.readBuf), 64, 0, REPEAT]);
  if (signal > 0) {
    // Every signal stayed blocked while it waited; now only its own is let through.
    const bit = signal - 1;
    r.words[(AT.maskButOne >> 2) + 0] = bit < 32 ? ~(1 << bit) >>> 0 : 0xffffffff;
    r.words[(AT.maskButOne >> 2) + 1] = bit >= 32 ? ~(1 << (bit - 32)) >>> 0 : 0xffffffff;
    entries.push([SYS.rt_sigprocmask, SIG_SETMASK, at(AT.maskButOne), 0, 8, MUST]);
    entries.push([SYS.getpid, 0, 0, 0, 0, 0]);
    entries.push([SYS.kill, 0, signal, 0, 0, PREVIOUS]);
    // The signal is delivered on the return from kill; exit_group(127) after the list
    // is only a fallback that nobody would take for the recorded status.
  } else {
    const code = 'exitCode' in opts.death ? opts.death.exitCode : 127;
    entries.push([SYS.exit_group, code, 0, 0, 0, 0]);
  }
  if (entries.length > MAX_ENTRIES) {
    free.push(r);
    throw new PcrError('PCR_ERR_INTERNAL', 'tiny child: too many steps');
  }
  entries.forEach((e, i) => e.forEach((n, k) => put(r, AT.entries + 48 * i + 8 * k, n)));
  put(r, AT.entries + 48 * entries.length, -1);

  put(r, AT.list, at(AT.entries));
  put(r, AT.maskAll, -1);
  const a = AT.cloneArgs;
  let flags = CLONE_CLEAR_SIGHAND + (opts.ownMemory ? 0 : CLONE_VM | CLONE_CHILD_CLEARTID);
  if (opts.pidfd) {
    flags += CLONE_PIDFD; // (not |: flags is above 32 bits)
    put(r, a + 8, at(AT.pidfd));
  }
  put(r, a, flags);
  put(r, a + 16, at(AT.tid)); // child_tid
  put(r, a + 32, SIGCHLD); // exit_signal
  put(r, a + 40, at(AT.stack)); // stack
  put(r, a + 48, PAGE - AT.stack); // stack_size
  if (opts.pid !== undefined) {
    r.view.writeInt32LE(opts.pid, AT.setTid);
    put(r, a + 64, at(AT.setTid)); // set_tid
    put(r, a + 72, 1); // set_tid_size: one level, the child's namespace
  }
  r.view.writeUInt32LE(1, AT.tid);

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
  return { pid, pidfd: opts.pidfd ? r.view.readInt32LE(AT.pidfd) : -1 };
}
