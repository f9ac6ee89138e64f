/**
 * What a correct dump of a built example tree must say, in a shape that does not depend
 * on how the dump numbered its files: per task its pidfds (fd, flags, cloexec, target),
 * and the sharing classes as partitions of "pid:fd" keys. `expectTree` derives it from
 * the spec and the real pids; `describeImage` derives the same shape from an Image, so a
 * test compares the two with one deepEqual.
 */
import { PcrError } from '../errors.js';
import { FLAGS, type Image, type TaskState } from '../model/image.js';
import type { ExampleTarget } from '../kinds/kind.js';
import { kindOf } from '../kinds/registry.js';
import type { Plan } from './plan.js';
import { fileFlagsOf } from './plan.js';
import type { ResolvedPidfd } from './validate.js';

/** A target as the expectations describe it: each kind's `example` (src/kinds). */
export type ExpectedTarget = ExampleTarget;

export interface ExpectedFd {
  fd: number;
  /** f_flags without O_CLOEXEC. */
  flags: number;
  cloexec: boolean;
  target: ExpectedTarget;
}

export interface ExpectedTask {
  pid: number;
  ppid: number;
  state: TaskState;
  /** Zombies only: the wait status. */
  exitStatus?: number;
  /** Sorted by fd. */
  fds: ExpectedFd[];
}

export interface ExpectedTree {
  rootPid: number;
  /** Sorted by pid. */
  tasks: ExpectedTask[];
  /** Partition of every pidfd ("pid:fd") by open file description. */
  sameFile: string[][];
  /** Partition of every pidfd ("pid:fd") by target (pidfs inode). */
  sameTarget: string[][];
}

/** Real ids of a built tree. */
export interface TreeIds {
  /** The process that built the tree: the root's parent. */
  builderPid: number;
  /** Every task and external, by name. */
  pids: ReadonlyMap<string, number>;
  /** Tids of each task's extra threads, by index. */
  threadTids: ReadonlyMap<string, readonly number[]>;
}

const key = (pid: number, fd: number): string => `${pid}:${fd}`;

function compareKeys(a: string, b: string): number {
  const [pa, fa] = a.split(':').map(Number) as [number, number];
  const [pb, fb] = b.split(':').map(Number) as [number, number];
  return pa - pb || fa - fb;
}

/** Groups keys by class id; each class sorted, classes sorted by their first key. */
export function partition(entries: Iterable<[key: string, cls: string]>): string[][] {
  const groups = new Map<string, string[]>();
  for (const [k, c] of entries) groups.set(c, [...(groups.get(c) ?? []), k]);
  const out = [...groups.values()].map((g) => g.sort(compareKeys));
  return out.sort((a, b) => compareKeys(a[0]!, b[0]!));
}

function idOf(ids: TreeIds, name: string): number {
  const pid = ids.pids.get(name);
  if (pid === undefined) throw new PcrError('PCR_ERR_USAGE', `no pid for '${name}'`);
  return pid;
}

/** Which process or thread the file of this pidfd refers to, as a stable string. */
function targetKey(p: ResolvedPidfd): string {
  const t = p.origin.spec.target!;
  if ('task' in t) return `task:${t.task}`;
  if ('thread' in t) return `thread:${t.thread.task}:${t.thread.index}`;
  if ('external' in t) return `external:${t.external}`;
  return `dead:${p.origin.holder}:${p.origin.spec.fd}`;
}

function expectedTarget(plan: Plan, ids: TreeIds, p: ResolvedPidfd): ExpectedTarget {
  const t = p.origin.spec.target!;
  if ('task' in t) {
    const zombie = plan.tasks.find((x) => x.name === t.task)?.spec.zombie;
    return { kind: zombie ? 'in-tree-zombie' : 'in-tree-alive', pid: idOf(ids, t.task) };
  }
  if ('thread' in t) {
    const tid = ids.threadTids.get(t.thread.task)?.[t.thread.index];
    if (tid === undefined)
      throw new PcrError(
        'PCR_ERR_USAGE',
        `no tid for thread ${t.thread.index} of ${t.thread.task}`,
      );
    return { kind: 'thread', tid, taskPid: idOf(ids, t.thread.task) };
  }
  if ('external' in t) {
    const zombie = plan.externals.some((e) => e.name === t.external && e.zombie !== undefined);
    return { kind: 'external', pid: idOf(ids, t.external), zombie };
  }
  if ('dead' in t) return { kind: 'dead', exitStatus: t.dead.status };
  // A dead non-leader thread: PIDFD_INFO_EXIT reports 0 (measured on 6.18).
  return { kind: 'dead', exitStatus: 0 };
}

export function expectTree(plan: Plan, ids: TreeIds): ExpectedTree {
  const tasks: ExpectedTask[] = plan.tasks.map((t) => {
    const pid = idOf(ids, t.name);
    const ppid = t.parent === undefined ? ids.builderPid : idOf(ids, t.parent);
    const fds = plan.pidfds
      .filter((p) => p.holder === t.name)
      .map((p): ExpectedFd => ({
        fd: p.spec.fd,
        flags: fileFlagsOf(p.origin.spec),
        // fdinfo shows a file's own O_CLOEXEC on every fd of it.
        cloexec: (fileFlagsOf(p.origin.spec) & FLAGS.O_CLOEXEC) !== 0 || (p.spec.cloexec ?? true),
        target: expectedTarget(plan, ids, p),
      }))
      .sort((a, b) => a.fd - b.fd);
    return t.spec.zombie
      ? { pid, ppid, state: 'zombie', exitStatus: t.spec.zombie.status, fds }
      : { pid, ppid, state: 'running', fds };
  });
  const keyOf = (p: ResolvedPidfd): string => key(idOf(ids, p.holder), p.spec.fd);
  return {
    rootPid: idOf(ids, plan.tasks[0]!.name),
    tasks: tasks.sort((a, b) => a.pid - b.pid),
    sameFile: partition(
      plan.pidfds.map((p) => [keyOf(p), `${p.origin.holder}:${p.origin.spec.fd}`]),
    ),
    sameTarget: partition(plan.pidfds.map((p) => [keyOf(p), targetKey(p)])),
  };
}

/** The same description, read from a dump image. */
export function describeImage(image: Image): ExpectedTree {
  const targets = new Map(image.targets.map((t) => [t.ino, t]));
  const files = new Map(image.files.map((f) => [f.id, f]));
  const sameFile: Array<[string, string]> = [];
  const sameTarget: Array<[string, string]> = [];
  const tasks = image.tasks.map((task): ExpectedTask => {
    const fds = task.fds.map((e): ExpectedFd => {
      const file = files.get(e.fileId);
      if (!file)
        throw new PcrError(
          'PCR_ERR_IMAGE_INVALID',
          `task ${task.pid} fd ${e.fd}: no file ${e.fileId}`,
        );
      const target = targets.get(file.ino);
      if (!target)
        throw new PcrError(
          'PCR_ERR_IMAGE_INVALID',
          `task ${task.pid} fd ${e.fd}: no target for ino ${file.ino}`,
        );
      sameFile.push([key(task.pid, e.fd), String(file.id)]);
      sameTarget.push([key(task.pid, e.fd), String(file.ino)]);
      return { fd: e.fd, flags: file.flags, cloexec: e.cloexec, target: describeTarget(target) };
    });
    const base = { pid: task.pid, ppid: task.ppid, state: task.state };
    return task.exitStatus === undefined || task.state !== 'zombie'
      ? { ...base, fds }
      : { ...base, exitStatus: task.exitStatus, fds };
  });
  return {
    rootPid: image.rootPid,
    tasks: tasks.sort((a, b) => a.pid - b.pid),
    sameFile: partition(sameFile),
    sameTarget: partition(sameTarget),
  };
}

function describeTarget(t: Image['targets'][number]): ExpectedTarget {
  return kindOf(t.kind).example(t);
}
