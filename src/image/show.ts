/**
 * `pidfd-cr show`: a readable summary of an image (formatImage) and the stable JSON form
 * (imageToJson), which is a contract documented in docs/image-format.md ("JSON form").
 */
import type { FdEntry, Image, PidfdFile, Target, Task } from '../model/image.js';
import { FLAGS } from '../model/image.js';
import { decodeEndStatus, flagNames, type EndStatus } from './describe.js';
import { count, printable } from '../text.js';
import { kindOf } from '../kinds/registry.js';

/** Version of the JSON form; bumped only when a field changes meaning or disappears. */
export const IMAGE_JSON_VERSION = 1;

export interface ImageJson {
  jsonVersion: number;
  formatVersion: number;
  host: {
    bootId: string;
    kernelRelease: string;
    dumpTimeMs: number;
    /** ISO 8601 (UTC) form of dumpTimeMs. */
    dumpTime: string;
    toolVersion: string;
    freezeMethod: string;
    hostname: string;
  };
  rootPid: number;
  tasks: TaskJson[];
  files: FileJson[];
  targets: TargetJson[];
}

export interface TaskJson {
  pid: number;
  ppid: number;
  tgid: number;
  /** Distance from the root (root 0). */
  depth: number;
  tids: number[];
  comm: string;
  argv: string[];
  state: Task['state'];
  procState: string;
  exitStatus: number | null;
  exit: EndStatus | null;
  nsPids: number[];
  fds: FdJson[];
}

export interface FdJson {
  fd: number;
  fileId: number;
  cloexec: boolean;
  /** The file's flags plus O_CLOEXEC when cloexec. */
  flags: number;
  flagNames: string[];
  /** Decimal string of the target's pidfs inode. */
  ino: string;
}

export interface FileJson {
  id: number;
  flags: number;
  flagNames: string[];
  ino: string;
  /** Every fd that refers to this open file description. */
  holders: { pid: number; fd: number }[];
}

export interface TargetJson {
  ino: string;
  kind: Target['kind'];
  pid: number;
  nsPids: number[];
  taskPid: number;
  tid: number;
  exitStatus: number | null;
  exit: EndStatus | null;
  exitCgroupId: string;
  tgid: number;
  zombie: boolean;
  comm: string;
  /** Ids of the open files (PidfdFile) that point at this target. */
  fileIds: number[];
}

const fdFlags = (file: PidfdFile | undefined, fd: FdEntry): number =>
  ((file?.flags ?? 0) | (fd.cloexec ? FLAGS.O_CLOEXEC : 0)) >>> 0;

const decodeOptional = (status: number | undefined): EndStatus | null =>
  status === undefined ? null : decodeEndStatus(status);

/** Tree depth of every task (root 0), following ppid. */
function depths(image: Image): Map<number, number> {
  const depth = new Map<number, number>();
  for (const task of image.tasks) {
    depth.set(task.pid, task.pid === image.rootPid ? 0 : (depth.get(task.ppid) ?? -1) + 1);
  }
  return depth;
}

function holdersOf(image: Image): Map<number, { pid: number; fd: number }[]> {
  const holders = new Map<number, { pid: number; fd: number }[]>();
  for (const task of image.tasks) {
    for (const fd of task.fds) {
      const list = holders.get(fd.fileId) ?? [];
      list.push({ pid: task.pid, fd: fd.fd });
      holders.set(fd.fileId, list);
    }
  }
  return holders;
}

export function imageToJson(image: Image): ImageJson {
  const files = new Map(image.files.map((f) => [f.id, f]));
  const holders = holdersOf(image);
  const depth = depths(image);
  return {
    jsonVersion: IMAGE_JSON_VERSION,
    formatVersion: image.formatVersion,
    host: {
      bootId: image.host.bootId,
      kernelRelease: image.host.kernelRelease,
      dumpTimeMs: image.host.dumpTimeMs,
      dumpTime: new Date(image.host.dumpTimeMs).toISOString(),
      toolVersion: image.host.toolVersion,
      freezeMethod: image.host.freezeMethod,
      hostname: image.host.hostname,
    },
    rootPid: image.rootPid,
    tasks: image.tasks.map((t) => ({
      pid: t.pid,
      ppid: t.ppid,
      tgid: t.tgid,
      depth: depth.get(t.pid) ?? 0,
      tids: t.tids,
      comm: t.comm,
      argv: t.argv,
      state: t.state,
      procState: t.procState,
      exitStatus: t.exitStatus ?? null,
      exit: decodeOptional(t.exitStatus),
      nsPids: t.nsPids,
      fds: t.fds.map((fd) => {
        const file = files.get(fd.fileId);
        const flags = fdFlags(file, fd);
        const ino = String(file?.ino ?? '');
        return {
          fd: fd.fd,
          fileId: fd.fileId,
          cloexec: fd.cloexec,
          flags,
          flagNames: flagNames(flags),
          ino,
        };
      }),
    })),
    files: image.files.map((f) => ({
      id: f.id,
      flags: f.flags,
      flagNames: flagNames(f.flags),
      ino: f.ino.toString(),
      holders: holders.get(f.id) ?? [],
    })),
    targets: image.targets.map((t) => ({
      ino: t.ino.toString(),
      kind: t.kind,
      pid: t.pid,
      nsPids: t.nsPids,
      taskPid: t.taskPid,
      tid: t.tid,
      exitStatus: t.exitStatus ?? null,
      exit: decodeOptional(t.exitStatus),
      exitCgroupId: t.exitCgroupId.toString(),
      tgid: t.tgid,
      zombie: t.zombie,
      comm: t.comm,
      fileIds: image.files.filter((f) => f.ino === t.ino).map((f) => f.id),
    })),
  };
}

// ---------------------------------------------------------------- text

/** One phrase for a target: what it is, which process, how it ended. */
export function describeTarget(target: Target, tasks: ReadonlyMap<number, Task>): string {
  const commOf = (pid: number): string => {
    const comm = tasks.get(pid)?.comm;
    return comm ? ` (${comm})` : '';
  };
  return kindOf(target.kind).describe(target, {
    task: (pid) => tasks.get(pid),
    commOf,
    endText: (status) => decodeEndStatus(status).text,
  });
}

function taskLine(task: Task, indent: string): string {
  const threads = task.tids.length > 1 ? `, threads ${task.tids.join(' ')}` : '';
  const end = task.exitStatus === undefined ? '' : `, ${decodeEndStatus(task.exitStatus).text}`;
  const state = task.procState ? `${task.state} ${task.procState}` : task.state;
  return `${indent}${task.pid} ${task.comm || '?'} [${state}]${threads}${end}`;
}

function fdLine(
  fd: FdEntry,
  indent: string,
  files: ReadonlyMap<number, PidfdFile>,
  targets: ReadonlyMap<bigint, Target>,
  tasks: ReadonlyMap<number, Task>,
): string {
  const file = files.get(fd.fileId);
  const words = flagNames(fdFlags(file, fd)).join(' ');
  const target = file ? targets.get(file.ino) : undefined;
  const what = target ? describeTarget(target, tasks) : 'no target';
  return `${indent}fd ${String(fd.fd).padEnd(4)} ${words.padEnd(22)} file ${fd.fileId}, ino ${file?.ino ?? '?'}: ${what}`;
}

function sharedFilesSection(image: Image): string[] {
  const holders = holdersOf(image);
  const lines = image.files
    .filter((f) => (holders.get(f.id) ?? []).length > 1)
    .map((f) => {
      const who = (holders.get(f.id) ?? []).map((h) => `${h.pid}:${h.fd}`).join(', ');
      return `  file ${f.id} (ino ${f.ino}, ${flagNames(f.flags).join(' ')}): ${who}`;
    });
  return lines.length ? ['open files shared by several fds (pid:fd):', ...lines] : [];
}

function inoGroupsSection(image: Image, tasks: ReadonlyMap<number, Task>): string[] {
  const lines = image.targets
    .map((t) => ({ t, ids: image.files.filter((f) => f.ino === t.ino).map((f) => f.id) }))
    .filter(({ ids }) => ids.length > 1)
    .map(({ t, ids }) => `  ino ${t.ino} (${describeTarget(t, tasks)}): files ${ids.join(', ')}`);
  return lines.length ? ['targets opened separately more than once:', ...lines] : [];
}

/** Tasks in tree order (each followed by its subtree), children in image order. */
function preOrder(image: Image): Task[] {
  const children = new Map<number, Task[]>();
  for (const task of image.tasks.slice(1)) {
    children.set(task.ppid, [...(children.get(task.ppid) ?? []), task]);
  }
  const out: Task[] = [];
  const visit = (task: Task): void => {
    out.push(task);
    (children.get(task.pid) ?? []).forEach(visit);
  };
  if (image.tasks[0]) visit(image.tasks[0]);
  return out;
}

/** A readable summary: host, the tree with each task's pidfds, then the sharing. */
export function formatImage(image: Image): string {
  const h = image.host;
  const tasks = new Map(image.tasks.map((t) => [t.pid, t]));
  const files = new Map(image.files.map((f) => [f.id, f]));
  const targets = new Map(image.targets.map((t) => [t.ino, t]));
  const depth = depths(image);
  const dumped = new Date(h.dumpTimeMs).toISOString();
  const lines = [
    `pidfd-cr image, format ${image.formatVersion}, written by pidfd-cr ${h.toolVersion || '?'}`,
    `host ${h.hostname || '?'}, kernel ${h.kernelRelease || '?'}, boot ${h.bootId}`,
    `dumped ${dumped}, frozen by ${h.freezeMethod || '?'}`,
    `${count(image.tasks.length, 'task')}, ${count(image.files.length, 'open pidfd file')}, ${count(image.targets.length, 'target')}, root ${image.rootPid}`,
    '',
  ];
  for (const task of preOrder(image)) {
    const indent = '  '.repeat(depth.get(task.pid) ?? 0);
    lines.push(taskLine(task, indent));
    for (const fd of task.fds) lines.push(fdLine(fd, `${indent}    `, files, targets, tasks));
  }
  const sharing = [...sharedFilesSection(image), ...inoGroupsSection(image, tasks)];
  if (sharing.length) lines.push('', ...sharing);
  // comm and host names come from the kernel and the image: any bytes but NUL.
  return lines.map(printable).join('\n') + '\n';
}
