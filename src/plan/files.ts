/**
 * Per file: who holds it, how it is opened, who opens it, and the dead groups. Pure.
 * Anything that cannot be restored faithfully is collected as a refusal naming the task,
 * fd and reason; nothing is approximated.
 */
import { ImageError } from '../errors.js';
import type { Image, PidfdFile, Target, Task } from '../model/image.js';
import {
  describeFlags,
  byHandleCanMake,
  pidfdOpenCanMake,
  pidfdOpenFlags,
  reopenFlagsFor,
} from '../model/flags.js';
import type { Planned } from '../kinds/kind.js';
import { kindOf, strategyOf } from '../kinds/registry.js';
import { SIGKILL_STATUS, unreproducibleStatus } from './status.js';
import { COORDINATOR_OPENER } from './types.js';
import type {
  DeadGroup,
  ExitStatusSource,
  FileHolder,
  FilePlan,
  OpenHow,
  PlanOptions,
} from './types.js';

export interface ImageIndex {
  image: Image;
  tasks: Map<number, Task>;
  files: Map<number, PidfdFile>;
  targets: Map<bigint, Target>;
  holders: Map<number, FileHolder[]>;
}

export function indexImage(image: Image): ImageIndex {
  const tasks = new Map(image.tasks.map((t) => [t.pid, t]));
  const files = new Map(image.files.map((f) => [f.id, f]));
  const targets = new Map(image.targets.map((t) => [t.ino, t]));
  const holders = new Map<number, FileHolder[]>();
  for (const task of [...image.tasks].sort((a, b) => a.pid - b.pid)) {
    for (const e of [...task.fds].sort((a, b) => a.fd - b.fd)) {
      if (!files.has(e.fileId)) {
        throw new ImageError(`task ${task.pid} fd ${e.fd}`, `refers to unknown file ${e.fileId}`);
      }
      const list = holders.get(e.fileId) ?? [];
      let h = list.find((x) => x.pid === task.pid);
      if (h === undefined) list.push((h = { pid: task.pid, fds: [] }));
      h.fds.push({ fd: e.fd, cloexec: e.cloexec });
      holders.set(e.fileId, list);
    }
  }
  return { image, tasks, files, targets, holders };
}

/** "task 12 fd 4" for the first holder of a file: how refusals name a file. */
export function nameFile(holders: readonly FileHolder[]): string {
  const h = holders[0];
  return h === undefined ? 'a file nobody holds' : `task ${h.pid} fd ${h.fds[0]?.fd}`;
}

const highestPid = (pids: Iterable<number>) => Math.max(...pids);

/** How a file's f_flags are made: pidfd_open flags, and maybe a /proc/self/fd reopen. */
interface MadeFlags {
  pidfdFlags: number;
  reopenFlags?: number;
}

function makeFlags(flags: number, opts: PlanOptions): MadeFlags | { refusal: string } {
  if (pidfdOpenCanMake(flags)) return { pidfdFlags: pidfdOpenFlags(flags) };
  // Access mode 03: pidfd_open, then open_by_handle_at of its ino (see FilePlan.reopenFlags).
  if (byHandleCanMake(flags)) return { pidfdFlags: 0, reopenFlags: flags };
  const reopenFlags = reopenFlagsFor(flags);
  if (reopenFlags === undefined) {
    return { refusal: `flags ${describeFlags(flags)} cannot be made by pidfd_open or a reopen` };
  }
  if (opts.unprivileged) {
    return {
      refusal: `flags ${describeFlags(flags)} need a /proc/self/fd reopen, which needs CAP_DAC_OVERRIDE (pidfs inodes are 0700 root)`,
    };
  }
  return { pidfdFlags: 0, reopenFlags };
}

/** pidfd_open flags of a planned open: those of the file, and those its strategy adds. */
function pidfdFlagsFor(made: MadeFlags, how: OpenHow): number {
  return made.pidfdFlags | strategyOf(how).pidfdFlags;
}

/** How one file comes back, planned by its target's kind (src/kinds). */
function classify(ix: ImageIndex, file: PidfdFile, target: Target, opts: PlanOptions): Planned {
  const c = kindOf(target.kind).plan(target, file, {
    tasks: ix.tasks,
    bootId: ix.image.host.bootId,
    externalDead: opts.externalDead ?? false,
    currentBootId: opts.currentBootId,
    unreproducibleStatus,
    sigkillStatus: SIGKILL_STATUS,
  });
  if (typeof c === 'string') throw new ImageError(`file ${file.id}`, c);
  return c;
}

export interface FilesAndGroups {
  files: FilePlan[];
  deadGroups: DeadGroup[];
  refusals: string[];
}

interface PendingDead {
  file: PidfdFile;
  made: MadeFlags;
  holders: FileHolder[];
  exitStatus: number;
  source: ExitStatusSource;
  kind: Target['kind'];
}

/** Plans every held file; dead files are grouped by ino with one creator per group. */
export function planFiles(ix: ImageIndex, opts: PlanOptions): FilesAndGroups {
  const files: FilePlan[] = [];
  const refusals: string[] = [];
  const dead = new Map<bigint, PendingDead[]>();
  for (const file of [...ix.files.values()].sort((a, b) => a.id - b.id)) {
    const holders = ix.holders.get(file.id);
    if (holders === undefined) continue; // held by no task: nothing to restore
    const target = ix.targets.get(file.ino);
    if (target === undefined)
      throw new ImageError(`file ${file.id}`, `unknown target ino ${file.ino}`);
    const made = makeFlags(file.flags, opts);
    if ('refusal' in made) {
      refusals.push(`${nameFile(holders)}: ${made.refusal}`);
      continue;
    }
    const c = classify(ix, file, target, opts);
    if ('refusal' in c) refusals.push(`${nameFile(holders)}: ${c.refusal}`);
    else if (c.dead) {
      const pending = {
        file,
        made,
        holders,
        exitStatus: c.exitStatus,
        source: c.source,
        kind: target.kind,
      };
      dead.set(file.ino, [...(dead.get(file.ino) ?? []), pending]);
    } else {
      files.push({
        fileId: file.id,
        flags: file.flags,
        ino: file.ino.toString(),
        targetKind: target.kind,
        phase: 'open-alive',
        // Under --pidns new an external target is reachable only from outside the new
        // namespace (pidfd_open takes its pids, a pidfs handle gives ESTALE there).
        opener:
          opts.pidnsNew && target.kind === 'external'
            ? COORDINATOR_OPENER
            : highestPid(holders.map((h) => h.pid)),
        how: c.how,
        pidfdFlags: pidfdFlagsFor(made, c.how),
        ...(made.reopenFlags === undefined ? {} : { reopenFlags: made.reopenFlags }),
        holders,
      });
    }
  }
  const deadGroups = planDeadGroups(dead, files);
  files.sort((a, b) => a.fileId - b.fileId);
  return { files, deadGroups, refusals };
}

/** One group per dead ino (sorted by ino); creator = highest holder pid of any of its files. */
function planDeadGroups(dead: Map<bigint, PendingDead[]>, files: FilePlan[]): DeadGroup[] {
  const inos = [...dead.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return inos.map((ino, groupId) => {
    const members = dead.get(ino) ?? [];
    const creator = highestPid(members.flatMap((m) => m.holders.map((h) => h.pid)));
    const first = members[0]!;
    for (const m of members) {
      files.push({
        fileId: m.file.id,
        flags: m.file.flags,
        ino: ino.toString(),
        targetKind: m.kind,
        phase: 'dead',
        opener: creator,
        how: { strategy: 'temp', groupId },
        pidfdFlags: m.made.pidfdFlags,
        ...(m.made.reopenFlags === undefined ? {} : { reopenFlags: m.made.reopenFlags }),
        holders: m.holders,
      });
    }
    return {
      groupId,
      ino: ino.toString(),
      creator,
      exitStatus: first.exitStatus,
      statusSource: first.source,
      fileIds: members.map((m) => m.file.id).sort((a, b) => a - b),
    };
  });
}

/**
 * Why a zombie's comm cannot be recreated, or undefined if it can. The runtime names the
 * zombie with PR_SET_NAME (sys/temp-process.ts spawnZombie), which keeps at most 15 bytes
 * and stops at a NUL: any other name, '/', '.', '..' and the empty one included, comes back.
 */
export function unreproducibleComm(comm: string): string | undefined {
  if (comm.includes('\0')) return `comm '${comm}' contains NUL`;
  if (Buffer.byteLength(comm) > 15) return `comm '${comm}' is longer than 15 bytes`;
  return undefined;
}

/** Refusals for tasks that cannot be recreated as they were. */
export function taskRefusals(
  ix: ImageIndex,
  opts: { pidnsNew?: boolean; samePids?: boolean } = {},
): string[] {
  const out: string[] = [];
  const root = ix.image.tasks.find((t) => t.pid === ix.image.rootPid);
  const rootLevels = root?.nsPids.length ?? 1;
  if (opts.pidnsNew && opts.samePids && root && root.nsPids[rootLevels - 1] !== 1) {
    out.push(
      `--same-pids in a new pid namespace: the root task ${root.pid} (${root.comm}) was not the init (pid 1) of its pid namespace (NSpid ${root.nsPids.join(' ')}), but the new namespace's init is the restored root`,
    );
  }
  for (const task of ix.image.tasks) {
    const name = `task ${task.pid} (${task.comm})`;
    // NSpid lists the pid from the dumper's pid namespace down: more than one level means
    // the task lives in a nested namespace, where it sees other pids (its own included).
    // With --pidns new, the root's own namespace is recreated: its tasks are fine.
    if (opts.pidnsNew && task.nsPids.length !== rootLevels) {
      out.push(
        `${name} lives in another pid namespace than the root (NSpid ${task.nsPids.join(' ')}); a tree that spans several nested pid namespaces is not restored`,
      );
    } else if (!opts.pidnsNew && task.nsPids.length > 1) {
      out.push(
        `${name} lives in a nested pid namespace (NSpid ${task.nsPids.join(' ')}); pidfd-cr restores tasks into its own pid namespace only (a tree whose root is the init of that namespace: restore --pidns new)`,
      );
    }
    if (task.state !== 'zombie') continue;
    if (task.pid === ix.image.rootPid) out.push(`${name}: the root task is a zombie`);
    if (task.fds.length > 0) out.push(`${name}: a zombie cannot hold pidfds`);
    if (ix.image.tasks.some((t) => t.ppid === task.pid && t.pid !== task.pid)) {
      out.push(`${name}: a zombie cannot have children`);
    }
    if (task.exitStatus === undefined) out.push(`${name}: zombie without a recorded exit status`);
    else {
      const why = unreproducibleStatus(task.exitStatus);
      if (why !== undefined) out.push(`${name}: zombie ${why}`);
    }
    const badComm = unreproducibleComm(task.comm);
    if (badComm !== undefined) out.push(`${name}: zombie ${badComm}`);
  }
  return out;
}
