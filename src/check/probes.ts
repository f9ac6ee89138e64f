/**
 * `pidfd-cr check`, as `criu check`: real probes of what this kernel and our permissions
 * allow, on real processes (a tiny child that waits on its stdin and exits 7,
 * a helper thread of ours). Each probe either works (with what it saw) or fails naming
 * the system call and errno (or what it found instead of what it needed). Nothing is
 * left behind: the child is reaped, every fd closed, the ipc directory removed, the
 * subreaper bit put back as it was.
 */
import { fstatSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PcrError, SyscallError } from '../errors.js';
import {
  PIDFD_INFO,
  PIDFD_THREAD,
  PR_SET_CHILD_SUBREAPER,
  __WALL,
  clone3SetTidProbe,
  closeQuiet,
  dupAbove,
  getChildSubreaper,
  getStatusFlags,
  kcmpFile,
  openPidfdByIno,
  peerCred,
  pidfdGetInfo,
  pidfdOpen,
  pidfsHandleIno,
  prctl,
  ptraceDetach,
  ptraceInterrupt,
  ptraceSeize,
  recvFds,
  sendFds,
  seqpacketPair,
  waitpid,
} from '../../native/index.js';
import {
  startWaitingTemp,
  openTempPidfd,
  reapTemp,
  abortTemp,
  type TempProcess,
} from '../sys/temp-process.js';
import { helperThreads } from '../sys/threads.js';
import { parseCapEff, parseFdinfo } from '../procfs/parse.js';
import { ControlRouter } from '../protocol/zmq-link.js';
import { ControlDealer } from '../protocol/zmtp-dealer.js';

/** Stable probe ids (docs/cli.md "check"). */
export const PROBE_IDS = [
  'pidfd-open',
  'pidfd-thread',
  'pidfd-get-info',
  'pidfs-handles',
  'kcmp',
  'scm-rights',
  'ptrace',
  'pidfd-exit-info',
  'ptrace-scope',
  'ptrace-others',
  'child-subreaper',
  'ns-last-pid',
  'clone3-set-tid',
  'zeromq-ipc',
] as const;
export type ProbeId = (typeof PROBE_IDS)[number];

export interface ProbeError {
  /** The system call that failed, e.g. `ioctl(PIDFD_GET_INFO)`; absent for a wrong answer. */
  syscall?: string;
  errno?: number;
  errnoName?: string;
  message: string;
}

export interface ProbeResult {
  id: ProbeId;
  ok: boolean;
  /** What was done and seen (ok), or what failed. */
  detail: string;
  /** A fact the probe measured, where it has one (e.g. the ptrace scope). */
  value?: number | string | boolean | null;
  error?: ProbeError;
}

/** A wrong answer (the call worked but did not do what dump or restore rely on). */
const wrong = (message: string): PcrError => new PcrError('PCR_ERR_UNSUPPORTED', message);

function errorOf(err: unknown): ProbeError {
  if (err instanceof SyscallError)
    return {
      syscall: err.syscall,
      errno: err.errno,
      errnoName: err.errnoName,
      message: err.message,
    };
  const e = err as NodeJS.ErrnoException;
  // node:fs errors: syscall, code (EPERM) and a negative errno.
  if (typeof e?.syscall === 'string' && typeof e.code === 'string' && typeof e.errno === 'number')
    return {
      syscall: e.syscall,
      errno: Math.abs(e.errno),
      errnoName: e.code,
      message: `${e.syscall}${e.path ? ` (${e.path})` : ''} failed: ${e.code} (${Math.abs(e.errno)})`,
    };
  return { message: err instanceof Error ? err.message : String(err) };
}

interface Seen {
  detail: string;
  value?: ProbeResult['value'];
}

async function probe(id: ProbeId, run: () => Seen | Promise<Seen>): Promise<ProbeResult> {
  try {
    const seen = await run();
    return { id, ok: true, ...seen };
  } catch (err) {
    const error = errorOf(err);
    return { id, ok: false, detail: error.message, error };
  }
}

const O_EXCL = 0o200;
const CAPS = {
  CAP_DAC_OVERRIDE: 1,
  CAP_SYS_PTRACE: 19,
  CAP_SYS_ADMIN: 21,
  CAP_CHECKPOINT_RESTORE: 40,
};
export type CapabilityName = keyof typeof CAPS;

/** The capabilities that matter to pidfd-cr among this process's effective ones. */
export function effectiveCapabilities(
  status = readFileSync('/proc/self/status', 'utf8'),
): CapabilityName[] {
  const eff = parseCapEff(status);
  return (Object.keys(CAPS) as CapabilityName[]).filter((c) => (eff >> BigInt(CAPS[c])) & 1n);
}

const fdinfoPid = (fd: number): number =>
  parseFdinfo(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8')).pid ?? NaN;

/** Every fd the probes opened, closed at the end whatever happened. */
class Fds {
  private readonly open: number[] = [];
  add(fd: number): number {
    this.open.push(fd);
    return fd;
  }
  closeAll(): void {
    for (const fd of this.open.splice(0)) closeQuiet(fd);
  }
}

const PTRACE_SCOPE = '/proc/sys/kernel/yama/ptrace_scope';
const NS_LAST_PID = '/proc/sys/kernel/ns_last_pid';

/** Yama's ptrace_scope, or null without Yama (classic rules: same uid and dumpable). */
export function readPtraceScope(path = PTRACE_SCOPE): number | null {
  try {
    return Number(readFileSync(path, 'utf8').trim());
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/** Whether we may ptrace (dump) a process of our uid that is not our descendant. */
function ptraceOthers(scope: number | null, caps: readonly CapabilityName[]): Seen {
  const capPtrace = caps.includes('CAP_SYS_PTRACE');
  const what = scope === null ? 'no Yama' : `ptrace_scope ${scope}`;
  if (scope === null || scope === 0)
    return { detail: `${what}: any dumpable process of our uid`, value: true };
  if (scope === 3) throw wrong(`${what}: no process may be traced (until reboot)`);
  if (capPtrace) return { detail: `${what}, but we have CAP_SYS_PTRACE`, value: true };
  throw wrong(
    `${what} and no CAP_SYS_PTRACE: only ${scope === 1 ? 'our descendants' : 'nothing'} can be dumped`,
  );
}

/** A round trip of one frame over the restore's own control link, in a private directory. */
async function zeromqRoundTrip(): Promise<Seen> {
  const dir = mkdtempSync(join(tmpdir(), 'pcr-check-'));
  let router: ControlRouter | undefined;
  let dealer: ControlDealer | undefined;
  try {
    const t0 = performance.now();
    const echoed = new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => reject(wrong('no answer over ipc within 5 s')), 5000);
      void ControlRouter.bind(dir, {
        onFrame: (id, frame) => void router?.send(id, frame),
        onError: reject,
        onUnreachable: () => reject(wrong('the DEALER was unreachable')),
      }).then((r) => {
        router = r;
        dealer = new ControlDealer(dir, '1', {
          onFrame: (frame) => {
            clearTimeout(timer);
            resolve(frame);
          },
          onError: reject,
        });
        void dealer.send(Buffer.from('pidfd-cr check'));
      }, reject);
    });
    const frame = await echoed;
    if (frame.toString() !== 'pidfd-cr check') throw wrong('the echoed frame differs');
    return {
      detail: `ROUTER/DEALER round trip over ipc:// in ${(performance.now() - t0).toFixed(1)} ms`,
    };
  } finally {
    await dealer?.close();
    await router?.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface ProbeReport {
  probes: ProbeResult[];
  capabilities: CapabilityName[];
}

/** Runs every probe; never throws for what the machine does not allow. */
export async function runProbes(): Promise<ProbeReport> {
  const caps = effectiveCapabilities();
  const fds = new Fds();
  const results: ProbeResult[] = [];
  const add = async (id: ProbeId, run: () => Seen | Promise<Seen>): Promise<ProbeResult> => {
    const r = await probe(id, run);
    results.push(r);
    return r;
  };
  // The child: a tiny child waiting on its stdin, then exit 7 (the restore's dead-target
  // helper, kept alive while it is probed).
  let temp: TempProcess | undefined;
  let control = -1;
  const EXIT_7 = 7 << 8;
  try {
    let pidfd = -1;
    let ino = 0n;
    const start = await add('pidfd-open', () => {
      ({ temp, control } = startWaitingTemp(EXIT_7));
      fds.add(temp.pidfd);
      pidfd = fds.add(pidfdOpen(temp.pid));
      const link = readlinkSync(`/proc/self/fd/${pidfd}`);
      if (link !== 'anon_inode:[pidfd]') throw wrong(`fd ${pidfd} is ${link}, not a pidfd`);
      const seen = fdinfoPid(pidfd);
      if (seen !== temp.pid) throw wrong(`fdinfo Pid ${seen}, expected ${temp.pid}`);
      ino = BigInt(fstatSync(pidfd, { bigint: true }).ino);
      return { detail: `pidfd_open(${temp.pid}): fdinfo Pid ${seen}, ino ${ino}` };
    });
    const child = temp;
    if (!start.ok || child === undefined) {
      for (const id of PROBE_IDS.slice(1, 8))
        results.push({ id, ok: false, detail: 'not probed: pidfd_open failed' });
    } else {
      await add('pidfd-thread', () => {
        const leader = fds.add(pidfdOpen(child.pid, PIDFD_THREAD));
        if (!(getStatusFlags(leader) & O_EXCL))
          throw wrong('pidfd_open(PIDFD_THREAD) gave a file without O_EXCL');
        const tid = helperThreads()[0];
        if (tid === undefined) return { detail: `pidfd_open(${child.pid}, PIDFD_THREAD): O_EXCL` };
        const thread = fds.add(pidfdOpen(tid, PIDFD_THREAD));
        const seen = fdinfoPid(thread);
        if (seen !== tid) throw wrong(`thread pidfd: fdinfo Pid ${seen}, expected tid ${tid}`);
        return {
          detail: `pidfd_open(tid ${tid}, PIDFD_THREAD) of a non-leader thread: fdinfo Pid ${seen}`,
        };
      });
      await add('pidfd-get-info', () => {
        const info = pidfdGetInfo(pidfd, PIDFD_INFO.PID);
        if (!info.hasPid || info.pid !== child.pid || info.ppid !== process.pid)
          throw wrong(`PIDFD_GET_INFO: pid ${info.pid} ppid ${info.ppid}, mask ${info.mask}`);
        return { detail: `ioctl(PIDFD_GET_INFO): pid ${info.pid}, ppid ${info.ppid}` };
      });
      await add('pidfs-handles', () => {
        const handle = pidfsHandleIno(pidfd);
        if (handle !== ino) throw wrong(`pidfs handle holds ${handle}, the pidfd's ino is ${ino}`);
        const again = fds.add(openPidfdByIno(handle));
        const ino2 = BigInt(fstatSync(again, { bigint: true }).ino);
        if (ino2 !== ino) throw wrong(`open_by_handle_at gave ino ${ino2}, expected ${ino}`);
        return {
          detail: `name_to_handle_at: ino ${handle}; open_by_handle_at(FD_PIDFS_ROOT) reopens it`,
        };
      });
      await add('kcmp', () => {
        const dup = fds.add(dupAbove(pidfd, 3));
        const other = fds.add(pidfdOpen(child.pid));
        if (kcmpFile(process.pid, pidfd, process.pid, dup) !== 0)
          throw wrong('kcmp(KCMP_FILE) says a dup is another file');
        if (kcmpFile(process.pid, pidfd, process.pid, other) === 0)
          throw wrong('kcmp(KCMP_FILE) says two pidfd_open calls are one file');
        // Across processes, as dump and verification compare (needs ptrace access).
        if (kcmpFile(process.pid, pidfd, child.pid, 0) === 0)
          throw wrong("kcmp(KCMP_FILE) says our pidfd is the child's stdin");
        return {
          detail:
            'kcmp(KCMP_FILE): a dup is the same file, a second pidfd_open is not; works across processes',
        };
      });
      await add('scm-rights', () => {
        const [a, b] = seqpacketPair().map((fd) => fds.add(fd)) as [number, number];
        sendFds(a, Buffer.from('x'), [pidfd]);
        const got = recvFds(b, 16, 4);
        const fd = got?.fds[0];
        if (fd === undefined) throw wrong('no fd received over SCM_RIGHTS');
        fds.add(fd);
        if (kcmpFile(process.pid, pidfd, process.pid, fd) !== 0)
          throw wrong('the received fd is another file');
        const cred = peerCred(b);
        if (cred.pid !== process.pid)
          throw wrong(`SO_PEERCRED pid ${cred.pid}, expected ${process.pid}`);
        return {
          detail: 'a pidfd over SCM_RIGHTS on SOCK_SEQPACKET is the same file; SO_PEERCRED works',
        };
      });
      await add('ptrace', () => {
        ptraceSeize(child.pid);
        try {
          ptraceInterrupt(child.pid);
          const [, status] = waitpid(child.pid, __WALL);
          if ((status & 0xff) !== 0x7f)
            throw wrong(`waitpid: status 0x${status.toString(16)}, not a stop`);
          // What dump reads of every task: its fds and fdinfo.
          readFileSync(`/proc/${child.pid}/fdinfo/0`, 'utf8');
        } finally {
          ptraceDetach(child.pid);
        }
        return {
          detail: `PTRACE_SEIZE + PTRACE_INTERRUPT of child ${child.pid}: stopped, /proc fdinfo read, detached`,
        };
      });
      await add('pidfd-exit-info', async () => {
        // As the restore does for a dead target: a pidfd held before the reap.
        const held = fds.add(openTempPidfd(child, 0));
        closeQuiet(control); // EOF on its stdin: it dies with exit 7
        control = -1;
        const status = await reapTemp(child);
        if (status !== EXIT_7)
          throw wrong(`the child died with status ${status}, expected ${EXIT_7}`);
        const info = pidfdGetInfo(held, PIDFD_INFO.PID | PIDFD_INFO.EXIT);
        if (!info.hasExit) throw wrong('PIDFD_GET_INFO gave no PIDFD_INFO_EXIT after the reap');
        if (info.exitCode !== EXIT_7)
          throw wrong(`PIDFD_INFO_EXIT exit_code ${info.exitCode}, expected ${EXIT_7}`);
        try {
          closeQuiet(openPidfdByIno(ino));
          throw wrong('open_by_handle_at still opens a reaped process');
        } catch (err) {
          if (!(err instanceof SyscallError && err.errnoName === 'ESTALE')) throw err;
        }
        return {
          detail: `ioctl(PIDFD_GET_INFO, PIDFD_INFO_EXIT) after the reap: exit_code 0x${info.exitCode.toString(16)} (exit 7); the pidfs handle is then ESTALE`,
        };
      });
    }
  } finally {
    if (control >= 0) closeQuiet(control);
    if (temp && temp.pidfd >= 0) abortTemp(temp);
    fds.closeAll();
  }

  let scope: number | null = null;
  await add('ptrace-scope', () => {
    scope = readPtraceScope();
    return {
      detail: scope === null ? 'no Yama LSM (no ptrace_scope)' : `${PTRACE_SCOPE}: ${scope}`,
      value: scope,
    };
  });
  await add('ptrace-others', () => ptraceOthers(scope, caps));
  await add('child-subreaper', () => {
    const was = getChildSubreaper();
    try {
      prctl(PR_SET_CHILD_SUBREAPER, 1);
      if (!getChildSubreaper()) throw wrong('PR_GET_CHILD_SUBREAPER reads 0 after setting it');
    } finally {
      prctl(PR_SET_CHILD_SUBREAPER, was ? 1 : 0);
    }
    return { detail: 'prctl(PR_SET_CHILD_SUBREAPER): set, read back, restored' };
  });
  await add('ns-last-pid', () => {
    // Writing back the value just read changes nothing (pids are allocated above it).
    const last = readFileSync(NS_LAST_PID, 'utf8').trim();
    try {
      writeFileSync(NS_LAST_PID, last);
    } catch (err) {
      // node:fs names the path of a failed open, not of a failed write.
      (err as NodeJS.ErrnoException).path ??= NS_LAST_PID;
      throw err;
    }
    return { detail: `${NS_LAST_PID} is writable (wrote back ${last})`, value: Number(last) };
  });
  await add('clone3-set-tid', () => {
    try {
      clone3SetTidProbe(process.pid);
    } catch (err) {
      if (err instanceof SyscallError && err.errnoName === 'EEXIST')
        return {
          detail: `clone3(set_tid = ${process.pid}, in use): EEXIST, so we may choose pids`,
        };
      throw err;
    }
  });
  await add('zeromq-ipc', zeromqRoundTrip);
  // In the documented order, whatever order they ran in.
  results.sort((a, b) => PROBE_IDS.indexOf(a.id) - PROBE_IDS.indexOf(b.id));
  return { probes: results, capabilities: caps };
}
