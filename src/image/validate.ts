/**
 * Semantic validation of an image (docs/image-format.md, "Validation"). Pure: the kernel
 * limit it needs is passed in. Every failure is an ImageError whose `where` names the field
 * at fault in protobuf field names, e.g. `tasks[2].fds[1].file_id`.
 */
import { ImageError } from '../errors.js';
import { FLAGS, FORMAT_VERSION, type Image, type Target, type Task } from '../model/image.js';
import { kindOf, ownersOf } from '../kinds/registry.js';

export interface ValidationLimits {
  /** fd numbers must be below this (the kernel's fs.nr_open). */
  fdLimit: number;
}

const TASK_STATES = new Set(['running', 'stopped', 'zombie']);
const INT32_MAX = 0x7fffffff;
const UINT32_MAX = 0xffffffff;
const U64_MAX = (1n << 64n) - 1n;

function fail(where: string, message: string): never {
  throw new ImageError(where, message);
}

const isInt = (v: unknown, min: number, max: number): v is number =>
  typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;

function checkPid(v: unknown, where: string): void {
  if (!isInt(v, 1, INT32_MAX)) fail(where, `${String(v)} is not a pid`);
}

/**
 * A wait status word of a process that ended (as waitpid(2) gives it): `code << 8` for an
 * exit, or the signal number (1..64) plus 0x80 when a core was dumped.
 */
export function isEndStatus(s: unknown): s is number {
  if (!isInt(s, 0, 0xffff)) return false;
  const sig = s & 0x7f;
  if (sig === 0) return (s & 0xff) === 0;
  return sig <= 64 && s >> 8 === 0;
}

function checkEndStatus(s: number | undefined, where: string): void {
  if (s !== undefined && !isEndStatus(s)) fail(where, `${String(s)} is not an exit status word`);
}

/** The tasks by pid, with their index, once their pids are known to be unique. */
type TaskIndex = ReadonlyMap<number, { task: Task; index: number }>;

export function validateImage(image: Image, limits: ValidationLimits): void {
  if (image.formatVersion !== FORMAT_VERSION) {
    fail('format_version', `${image.formatVersion} is not format version ${FORMAT_VERSION}`);
  }
  checkHost(image);
  const tasks = checkTree(image);
  image.tasks.forEach((t, i) => checkTaskFields(t, `tasks[${i}]`));
  checkUniqueTids(image);
  const files = checkFiles(image);
  image.tasks.forEach((t, i) => checkFds(t, `tasks[${i}]`, files, limits));
  checkFilesUsed(image);
  checkZombieParents(image);
  const inos = checkTargets(image, tasks);
  checkOneTargetPerProcess(image);
  checkFileTargets(image, inos);
}

/** A zombie has no children in the tree: the kernel reparents them as it exits. */
function checkZombieParents(image: Image): void {
  const zombies = new Map(
    image.tasks.flatMap((t, i) => (t.state === 'zombie' ? [[t.pid, i] as const] : [])),
  );
  image.tasks.forEach((task, i) => {
    const parent = zombies.get(task.ppid);
    if (parent !== undefined) {
      fail(
        `tasks[${i}].ppid`,
        `parent ${task.ppid} (tasks[${parent}]) is a zombie: its children were reparented when it exited`,
      );
    }
  });
}

/**
 * One process (or thread) has one pidfs inode: two targets with different inos cannot
 * name the same live task, thread or external process at one dump. Each kind says what
 * its target names (kinds/*.ts `names`).
 */
function checkOneTargetPerProcess(image: Image): void {
  const seen = new Map<string, number>();
  image.targets.forEach((target, t) => {
    const key = kindOf(target.kind, `targets[${t}].kind`).names(target);
    if (key === undefined) return;
    const other = seen.get(key);
    if (other !== undefined) {
      fail(`targets[${t}]`, `${key} is also targets[${other}]: one process has one pidfs inode`);
    }
    seen.set(key, t);
  });
}

function checkHost(image: Image): void {
  const host = image.host as Image['host'] | undefined;
  if (!host) fail('host', 'the host context is missing');
  if (!host.bootId) fail('host.boot_id', 'is empty: inode numbers mean nothing without it');
  if (!isInt(host.dumpTimeMs, 0, Number.MAX_SAFE_INTEGER)) {
    fail('host.dump_time_ms', `${String(host.dumpTimeMs)} is not a time in ms`);
  }
}

/** Pids unique, root first, every other task's parent a task listed before it. */
function checkTree(image: Image): TaskIndex {
  if (image.tasks.length === 0) fail('tasks', 'the image has no tasks');
  const byPid = new Map<number, { task: Task; index: number }>();
  image.tasks.forEach((task, index) => {
    checkPid(task.pid, `tasks[${index}].pid`);
    const other = byPid.get(task.pid);
    if (other) fail(`tasks[${index}].pid`, `pid ${task.pid} is also tasks[${other.index}]`);
    byPid.set(task.pid, { task, index });
  });
  const root = byPid.get(image.rootPid);
  if (!root) fail('root_pid', `${image.rootPid} is not a task of the image`);
  if (root.index !== 0) {
    fail('root_pid', `the root ${image.rootPid} is tasks[${root.index}]; it must be listed first`);
  }
  const rootParent = byPid.get(root.task.ppid);
  if (rootParent) {
    fail('tasks[0].ppid', `the root's parent ${root.task.ppid} is tasks[${rootParent.index}]`);
  }
  image.tasks.forEach((task, i) => {
    if (i > 0 && !byPid.has(task.ppid)) {
      fail(`tasks[${i}].ppid`, `parent ${task.ppid} is not a task of the image`);
    }
  });
  checkNoCycles(image, byPid);
  image.tasks.forEach((task, i) => {
    const parent = byPid.get(task.ppid);
    if (i > 0 && parent && parent.index > i) {
      fail(`tasks[${i}].ppid`, `parent ${task.ppid} is tasks[${parent.index}], listed after it`);
    }
  });
  return byPid;
}

function checkNoCycles(image: Image, byPid: TaskIndex): void {
  const reachesRoot = new Set<number>([image.rootPid]);
  image.tasks.forEach((task, i) => {
    const chain: number[] = [];
    let pid = task.pid;
    while (!reachesRoot.has(pid)) {
      if (chain.includes(pid)) {
        fail(`tasks[${i}].ppid`, `the parent chain ${[...chain, pid].join(' -> ')} is a cycle`);
      }
      chain.push(pid);
      pid = byPid.get(pid)!.task.ppid;
    }
    chain.forEach((p) => reachesRoot.add(p));
  });
}

function checkTaskFields(task: Task, where: string): void {
  if (!TASK_STATES.has(task.state)) fail(`${where}.state`, `'${task.state}' is not a task state`);
  if (task.tgid !== task.pid) {
    fail(`${where}.tgid`, `${task.tgid} differs from pid ${task.pid}: a task is a process`);
  }
  task.tids.forEach((tid, k) => checkPid(tid, `${where}.tids[${k}]`));
  if (task.tids.length > 0 && task.tids[0] !== task.pid) {
    fail(`${where}.tids[0]`, `${task.tids[0]} is not the leader ${task.pid}`);
  }
  if (task.exitStatus !== undefined && task.state !== 'zombie') {
    fail(`${where}.exit_status`, `only a zombie has an exit status (state ${task.state})`);
  }
  checkEndStatus(task.exitStatus, `${where}.exit_status`);
  if (task.state === 'zombie' && task.fds.length > 0) {
    fail(`${where}.fds`, `a zombie holds no fds, but ${task.fds.length} are listed`);
  }
}

function checkUniqueTids(image: Image): void {
  const seen = new Map<number, string>();
  image.tasks.forEach((task, i) =>
    task.tids.forEach((tid, k) => {
      const where = `tasks[${i}].tids[${k}]`;
      const other = seen.get(tid);
      if (other !== undefined) fail(where, `thread ${tid} is also ${other}`);
      seen.set(tid, where);
    }),
  );
}

/**
 * File ids unique; returns the ids of the files whose f_flags carry O_CLOEXEC (opened
 * by pidfs handle with O_CLOEXEC) and the set of all ids.
 */
function checkFiles(image: Image): { ids: Set<number>; cloexecFiles: Set<number> } {
  const ids = new Map<number, number>();
  const cloexecFiles = new Set<number>();
  image.files.forEach((file, k) => {
    const where = `files[${k}]`;
    if (!isInt(file.id, 0, UINT32_MAX)) fail(`${where}.id`, `${String(file.id)} is not a uint32`);
    const other = ids.get(file.id);
    if (other !== undefined) fail(`${where}.id`, `file id ${file.id} is also files[${other}]`);
    ids.set(file.id, k);
    if (!isInt(file.flags, 0, UINT32_MAX)) {
      fail(`${where}.flags`, `${String(file.flags)} is not a uint32`);
    }
    if (file.flags & FLAGS.O_CLOEXEC) cloexecFiles.add(file.id);
  });
  return { ids: new Set(ids.keys()), cloexecFiles };
}

function checkFds(
  task: Task,
  where: string,
  files: ReturnType<typeof checkFiles>,
  limits: ValidationLimits,
) {
  const fileIds = files.ids;
  let previous = -1;
  task.fds.forEach((entry, j) => {
    const at = `${where}.fds[${j}]`;
    if (!isInt(entry.fd, 0, limits.fdLimit - 1)) {
      fail(`${at}.fd`, `${String(entry.fd)} is not an fd number in [0, ${limits.fdLimit})`);
    }
    if (entry.fd === previous) fail(`${at}.fd`, `fd ${entry.fd} is listed twice`);
    if (entry.fd < previous) fail(`${at}.fd`, `fd ${entry.fd} is out of order (fds are sorted)`);
    previous = entry.fd;
    if (!fileIds.has(entry.fileId)) fail(`${at}.file_id`, `no file has id ${entry.fileId}`);
    if (typeof entry.cloexec !== 'boolean') fail(`${at}.cloexec`, 'is not a boolean');
    // fdinfo ORs the file's O_CLOEXEC into every fd's flags: such an fd reads as cloexec.
    if (files.cloexecFiles.has(entry.fileId) && !entry.cloexec) {
      fail(`${at}.cloexec`, `false, but file ${entry.fileId} carries O_CLOEXEC in its flags`);
    }
  });
}

function checkFilesUsed(image: Image): void {
  const used = new Set(image.tasks.flatMap((t) => t.fds.map((f) => f.fileId)));
  image.files.forEach((file, k) => {
    if (!used.has(file.id)) fail(`files[${k}]`, `no fd uses file ${file.id}`);
  });
}

/** Target inos unique and every target consistent with its kind; returns the inos. */
function checkTargets(image: Image, tasks: TaskIndex): Map<bigint, number> {
  const inos = new Map<bigint, number>();
  const threads = new Map<number, number>();
  image.tasks.forEach((task, i) => [task.pid, ...task.tids].forEach((tid) => threads.set(tid, i)));
  image.targets.forEach((target, t) => {
    const where = `targets[${t}]`;
    if (typeof target.ino !== 'bigint' || target.ino < 0n || target.ino > U64_MAX) {
      fail(`${where}.ino`, `${String(target.ino)} is not a uint64`);
    }
    const other = inos.get(target.ino);
    if (other !== undefined) fail(`${where}.ino`, `ino ${target.ino} is also targets[${other}]`);
    inos.set(target.ino, t);
    checkTargetKind(target, where, tasks, threads);
  });
  return inos;
}

function checkTargetKind(
  target: Target,
  where: string,
  tasks: TaskIndex,
  threads: ReadonlyMap<number, number>,
): void {
  const kind = kindOf(target.kind, `${where}.kind`);
  if (target.exitStatus !== undefined && !kind.owns.includes('exitStatus')) {
    fail(
      `${where}.exit_status`,
      `only a ${ownersOf('exitStatus')} target has an exit status (kind ${target.kind})`,
    );
  }
  checkEndStatus(target.exitStatus, `${where}.exit_status`);
  if (target.zombie && !kind.owns.includes('zombie')) {
    fail(`${where}.zombie`, `is set on a ${target.kind} target (only ${ownersOf('zombie')} ones)`);
  }
  if (target.tgid !== 0 && !kind.owns.includes('tgid')) {
    fail(`${where}.tgid`, `is set on a ${target.kind} target (only ${ownersOf('tgid')} threads)`);
  }
  kind.validate(target, where, { tasks, checkPid, threads });
}

function checkFileTargets(image: Image, inos: Map<bigint, number>): void {
  const pointedAt = new Set<bigint>();
  image.files.forEach((file, k) => {
    if (typeof file.ino !== 'bigint' || !inos.has(file.ino)) {
      fail(`files[${k}].ino`, `no target has ino ${String(file.ino)}`);
    }
    pointedAt.add(file.ino);
  });
  image.targets.forEach((target, t) => {
    if (!pointedAt.has(target.ino)) fail(`targets[${t}]`, `no file points at ino ${target.ino}`);
  });
}
