/**
 * planRestore: image -> RestorePlan. Pure and deterministic (same image, same plan): no
 * I/O, every list sorted. Refuses, by name, anything it cannot restore faithfully.
 */
import { ImageError, PcrError } from '../errors.js';
import type { Image, Task } from '../model/image.js';
import { strategyOf } from '../kinds/registry.js';
import { indexImage, planFiles, taskRefusals } from './files.js';
import type { ImageIndex } from './files.js';
import { COORDINATOR_OPENER } from './types.js';
import type {
  DeadGroup,
  FilePlan,
  OpenPhase,
  PhaseSteps,
  PlanOptions,
  PlannedFd,
  ReceiveStep,
  RestorePlan,
  SendStep,
  TaskPlan,
  TempStep,
} from './types.js';
import { MAX_FDS_PER_MESSAGE } from '../../native/index.js';

export function planRestore(image: Image, opts: PlanOptions = {}): RestorePlan {
  const ix = indexImage(image);
  checkTree(ix);
  const { files, deadGroups, refusals } = planFiles(ix, opts);
  const all = [...taskRefusals(ix, opts), ...refusals];
  if (all.length > 0) {
    throw new PcrError('PCR_ERR_UNSUPPORTED', `cannot restore faithfully: ${all.join('; ')}`);
  }
  const workers = image.tasks.filter((t) => t.state !== 'zombie');
  return {
    rootPid: image.rootPid,
    bootId: image.host.bootId,
    externalDead: opts.externalDead ?? false,
    ...(opts.pidnsNew ? { pidnsNew: true } : {}),
    tasks: workers.map((t) => planTask(ix, t, files, deadGroups)),
    files,
    deadGroups,
  };
}

/** The tree must be whole: a root, and every other task's parent in the image. */
function checkTree(ix: ImageIndex): void {
  if (!ix.tasks.has(ix.image.rootPid)) {
    throw new ImageError('rootPid', `root task ${ix.image.rootPid} is not in the image`);
  }
  for (const t of ix.image.tasks) {
    if (t.pid !== ix.image.rootPid && !ix.tasks.has(t.ppid)) {
      throw new ImageError(`task ${t.pid}`, `parent ${t.ppid} is not in the image`);
    }
  }
}

const byNumber = (a: number, b: number) => a - b;

function chunks<T>(list: readonly T[]): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < list.length; i += MAX_FDS_PER_MESSAGE) {
    out.push(list.slice(i, i + MAX_FDS_PER_MESSAGE));
  }
  return out;
}

/** Files of `phase` that `from` opens and `to` holds (to !== from), by file id. */
function filesBetween(files: FilePlan[], phase: OpenPhase, from: number, to: number): FilePlan[] {
  return files.filter(
    (f) => f.phase === phase && f.opener === from && f.holders.some((h) => h.pid === to),
  );
}

function peers(files: FilePlan[], phase: OpenPhase, pid: number, role: 'to' | 'from'): number[] {
  const set = new Set<number>();
  for (const f of files) {
    if (f.phase !== phase) continue;
    if (role === 'to' && f.opener === pid) {
      for (const h of f.holders) if (h.pid !== pid) set.add(h.pid);
    }
    if (role === 'from' && f.opener !== pid && f.holders.some((h) => h.pid === pid)) {
      set.add(f.opener);
    }
  }
  return [...set].sort(byNumber);
}

function sendsOf(files: FilePlan[], phase: OpenPhase, pid: number): SendStep[] {
  return peers(files, phase, pid, 'to').flatMap((to) =>
    chunks(filesBetween(files, phase, pid, to).map((f) => f.fileId)).map((fileIds) => ({
      to,
      fileIds,
    })),
  );
}

/** The messages the coordinator sends, as a task's sends (COORDINATOR_OPENER). */
export function coordinatorSends(plan: RestorePlan): SendStep[] {
  return sendsOf(plan.files, 'open-alive', COORDINATOR_OPENER);
}

function receivesOf(files: FilePlan[], phase: OpenPhase, pid: number): ReceiveStep[] {
  return peers(files, phase, pid, 'from').flatMap((from) =>
    chunks(filesBetween(files, phase, from, pid)).map((batch) => ({
      from,
      files: batch.map((f) => ({
        fileId: f.fileId,
        installAt: f.holders.find((h) => h.pid === pid)?.fds ?? [],
      })),
    })),
  );
}

function planSteps(
  files: FilePlan[],
  groups: DeadGroup[],
  phase: OpenPhase,
  pid: number,
): PhaseSteps {
  const temps: TempStep[] =
    phase === 'dead'
      ? groups
          .filter((g) => g.creator === pid)
          .map((g) => ({
            groupId: g.groupId,
            ino: g.ino,
            exitStatus: g.exitStatus,
            statusSource: g.statusSource,
          }))
      : [];
  const opens = files
    .filter((f) => f.phase === phase && f.opener === pid)
    .map((f) => ({
      fileId: f.fileId,
      flags: f.flags,
      how: f.how,
      pidfdFlags: f.pidfdFlags,
      ...(f.reopenFlags === undefined ? {} : { reopenFlags: f.reopenFlags }),
      installAt: f.holders.find((h) => h.pid === pid)?.fds ?? [],
    }));
  return {
    temps,
    opens,
    sends: sendsOf(files, phase, pid),
    receives: receivesOf(files, phase, pid),
  };
}

const reservedFdsOf = (task: Task) => task.fds.map((e) => e.fd).sort(byNumber);

function planTask(ix: ImageIndex, task: Task, files: FilePlan[], groups: DeadGroup[]): TaskPlan {
  const children = ix.image.tasks
    .filter((t) => t.ppid === task.pid && t.pid !== ix.image.rootPid)
    .sort((a, b) => a.pid - b.pid);
  const threads = new Set<number>();
  for (const f of files) {
    const live = strategyOf(f.how).liveThread?.(f.how);
    if (live !== undefined && live.taskPid === task.pid) threads.add(live.tid);
  }
  const dead = planSteps(files, groups, 'dead', task.pid);
  const fds: PlannedFd[] = [...task.fds]
    .sort((a, b) => a.fd - b.fd)
    .map((e) => ({ fd: e.fd, fileId: e.fileId, cloexec: e.cloexec }));
  return {
    pid: task.pid,
    ppid: task.pid === ix.image.rootPid ? 0 : task.ppid,
    comm: task.comm,
    reservedFds: reservedFdsOf(task),
    workerChildren: children
      .filter((c) => c.state !== 'zombie')
      .map((c) => ({ pid: c.pid, reservedFds: reservedFdsOf(c) })),
    zombieChildren: children
      .filter((c) => c.state === 'zombie')
      .map((c) => ({ pid: c.pid, exitStatus: c.exitStatus ?? 0, comm: c.comm })),
    threads: [...threads].sort(byNumber),
    steps: { 'open-alive': planSteps(files, groups, 'open-alive', task.pid), dead },
    killTemps: dead.temps.map((t) => t.groupId),
    fds,
  };
}
