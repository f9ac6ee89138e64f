/**
 * dumpTree: freeze a process tree with ptrace, read every task's pidfds, group them into
 * open files (kcmp) and targets (pidfs inode), classify the targets, thaw the tree, and
 * return the Image (src/model/image.ts). dumpToDir adds the image directory checks and
 * the atomic write. See docs/dump.md.
 */
import { PcrError, UsageError } from '../errors.js';
import {
  FLAGS,
  FORMAT_VERSION,
  type FdEntry,
  type Image,
  type PidfdFile,
  type Target,
} from '../model/image.js';
import { writeImage } from '../image/store.js';
import { classifyTarget, type TargetProbes, type TreeFacts } from './classify.js';
import { openFileClasses, type FileCompare, type HeldPidfd } from '../sys/file-classes.js';
import { freezeTree, type FreezeOptions } from './freeze.js';
import { hostContext } from './host.js';
import { checkImageDir } from './preflight.js';
import {
  frozenKcmp,
  kernelProbes,
  readTask,
  taskIno,
  withTaskPidfds,
  type TaskRead,
} from './read.js';
import type { WalkedTask } from './walk.js';
import { readStatus } from '../procfs/read.js';
import { silentLogger, type Logger } from '../log.js';
import { count } from '../text.js';
import { killTree, waitTreeGone } from './kill.js';

export interface DumpOptions extends FreezeOptions {
  /** Leave every live task stopped (group-stop) after the dump. Not on failure. */
  leaveStopped?: boolean;
  /** Called while the tree is frozen, before it is read (for tests and tools). */
  onFrozen?: (tasks: readonly WalkedTask[]) => void | Promise<void>;
  /**
   * Told what the dump does at each step: freeze (and walk), read, classify, thaw, write
   * (a pino Logger fits; default: says nothing).
   */
  logger?: Logger;
  /** Called with the image while the tree is still frozen (dumpToDir's write and kill). */
  onRead?: (image: Image) => void;
}

export interface DumpToDirOptions extends DumpOptions {
  /** Replace an image already in the directory. */
  force?: boolean;
  /**
   * Once the image is written and synced, SIGKILL the tree while it is still frozen and
   * wait until its pids are free (dump/kill.ts), for `restore --same-pids`.
   */
  kill?: boolean;
}

/**
 * A thread id is not a tree root: /proc/<tid> exists for any thread (hidden from
 * readdir), but its Tgid names the process. A pid that does not exist is left to
 * freezeTree, which names it.
 */
function refuseThread(pid: number): void {
  let tgid: number;
  try {
    tgid = readStatus(pid).tgid;
  } catch {
    return;
  }
  if (tgid !== pid) {
    throw new UsageError(
      `dump: ${pid} is a thread of process ${tgid}, not a process (dump -t ${tgid})`,
    );
  }
}

export async function dumpTree(rootPid: number, opts: DumpOptions = {}): Promise<Image> {
  if (!Number.isSafeInteger(rootPid) || rootPid <= 0) {
    throw new UsageError(`dump: ${rootPid} is not a pid`);
  }
  refuseThread(rootPid);
  const log = opts.logger ?? silentLogger;
  log.info({ step: 'freeze', root: rootPid }, `freeze: seizing the tree of ${rootPid} (ptrace)`);
  // Date.now, not performance.now: the global `performance` loads perf_hooks (≈ 1.5 ms CPU).
  const t0 = Date.now();
  const frozen = await freezeTree(rootPid, opts);
  log.info(
    { step: 'walk', tasks: frozen.tasks.length, ms: Date.now() - t0 },
    `walk: ${count(frozen.tasks.length, 'task')} frozen`,
  );
  let ok = false;
  try {
    await opts.onFrozen?.(frozen.tasks);
    const image = withTaskPidfds(() =>
      readFrozenTree(rootPid, frozen.tasks, kernelProbes, frozenKcmp, log),
    );
    frozen.checkStillFrozen();
    opts.onRead?.(image);
    ok = true;
    return image;
  } finally {
    const leaveStopped = ok && (opts.leaveStopped ?? false);
    frozen.release({ leaveStopped });
    log.info(
      { step: 'thaw', leaveStopped },
      leaveStopped ? 'thaw: left stopped' : 'thaw: tree released',
    );
  }
}

/** Checks DIR, dumps, writes DIR/pidfd-cr.img atomically; returns the image and its path. */
export async function dumpToDir(
  rootPid: number,
  dir: string,
  opts: DumpToDirOptions = {},
): Promise<{ image: Image; path: string }> {
  checkImageDir(dir, opts.force ?? false);
  if (!opts.kill) {
    const image = await dumpTree(rootPid, opts);
    const path = writeImage(dir, image, { force: opts.force ?? false });
    opts.logger?.info({ step: 'write', path }, `write: ${path}`);
    return { image, path };
  }
  if (opts.leaveStopped) throw new UsageError('dump: --kill and --leave-stopped contradict');
  let path = '';
  const image = await dumpTree(rootPid, {
    ...opts,
    onRead: (img) => {
      path = writeImage(dir, img, { force: opts.force ?? false });
      opts.logger?.info({ step: 'write', path }, `write: ${path}`);
      killTree(img);
      opts.logger?.info({ step: 'kill' }, 'kill: the dumped tree is SIGKILLed (--kill)');
    },
  });
  await waitTreeGone(image);
  opts.logger?.info({ step: 'kill' }, 'kill: every dumped pid is free');
  return { image, path };
}

/** Builds the image from a frozen tree. Exported for tests with injected probes. */
export function readFrozenTree(
  rootPid: number,
  walked: readonly WalkedTask[],
  probes: TargetProbes,
  cmp: FileCompare,
  log: Logger = silentLogger,
): Image {
  const reads = walked.map(readTask);
  for (const r of reads)
    log.debug(
      { step: 'read', task: r.task.pid, state: r.task.state, pidfds: r.pidfds.length },
      `read: task ${r.task.pid}: ${count(r.pidfds.length, 'pidfd')}`,
    );
  log.info(
    { step: 'read', tasks: reads.length, pidfds: reads.reduce((n, r) => n + r.pidfds.length, 0) },
    `read: ${count(reads.length, 'task')}, ${count(
      reads.reduce((n, r) => n + r.pidfds.length, 0),
      'pidfd',
    )}`,
  );
  if (reads[0]?.task.state === 'zombie') {
    throw new PcrError('PCR_ERR_TASK_EXITED', `task ${rootPid} has exited (it is a zombie)`);
  }
  const facts = treeFacts(reads);
  const held = reads.flatMap((r) =>
    r.pidfds.map((p) => ({
      pid: r.task.pid,
      fd: p.fd,
      ino: p.ino,
      flags: p.flags,
      cloexec: p.cloexec,
    })),
  );
  const classes = openFileClasses(held, cmp);
  const files = filesOf(held, classes, probes);
  const targets = new Map<bigint, Target>();
  let k = 0;
  const tasks = reads.map((r) => {
    const fds: FdEntry[] = r.pidfds.map((p) => {
      if (!targets.has(p.ino)) targets.set(p.ino, classifyTarget(r.task.pid, p, facts, probes));
      return { fd: p.fd, fileId: classes[k++]!, cloexec: p.cloexec };
    });
    return { ...r.task, fds };
  });
  const kinds: Record<string, number> = {};
  for (const t of targets.values()) kinds[t.kind] = (kinds[t.kind] ?? 0) + 1;
  log.info(
    { step: 'classify', files: files.length, targets: targets.size, kinds },
    `classify: ${count(files.length, 'open file')}, ${count(targets.size, 'target')}`,
  );
  return {
    formatVersion: FORMAT_VERSION,
    host: hostContext(),
    rootPid,
    tasks,
    files,
    targets: [...targets.values()],
  };
}

/**
 * One PidfdFile per class. fdinfo ORs O_CLOEXEC into `flags` for a close-on-exec fd and
 * for a file that carries O_CLOEXEC itself (opened by pidfs handle with O_CLOEXEC, which
 * the kernel keeps in f_flags): when every fd of a file reads close-on-exec, F_GETFL of a
 * pidfd_getfd copy tells the file's own flags. (Such a file's fds then all read
 * close-on-exec whatever their FD_CLOEXEC: that bit is not observable from outside.)
 */
function filesOf(
  held: ReadonlyArray<HeldPidfd & { cloexec: boolean }>,
  classes: readonly number[],
  probes: TargetProbes,
): PidfdFile[] {
  const files: PidfdFile[] = [];
  const firstHolder: number[] = []; // index in `held` of each file's first fd
  const allCloexec: boolean[] = [];
  classes.forEach((id, i) => {
    const h = held[i]!;
    allCloexec[id] = (allCloexec[id] ?? true) && h.cloexec;
    const file = files[id];
    if (!file) {
      files[id] = { id, flags: h.flags, ino: h.ino };
      firstHolder[id] = i;
    } else if (file.flags !== h.flags) {
      throw new PcrError(
        'PCR_ERR_INTERNAL',
        `task ${h.pid} fd ${h.fd}: flags ${h.flags.toString(8)} differ within one open file`,
      );
    }
  });
  if (!probes.fileFlags) return files;
  for (const file of files) {
    if (!allCloexec[file.id]) continue;
    const h = held[firstHolder[file.id]!]!;
    if (probes.fileFlags(h.pid, h.fd) & FLAGS.O_CLOEXEC) file.flags |= FLAGS.O_CLOEXEC;
  }
  return files;
}

function treeFacts(reads: TaskRead[]): TreeFacts {
  const taskInoMap = new Map<number, bigint>();
  const zombies = new Set<number>();
  const threadOwner = new Map<number, number>();
  for (const { task } of reads) {
    taskInoMap.set(task.pid, taskIno(task.pid));
    if (task.state === 'zombie') zombies.add(task.pid);
    for (const tid of task.tids) if (tid !== task.pid) threadOwner.set(tid, task.pid);
  }
  return { taskIno: taskInoMap, zombies, threadOwner };
}
