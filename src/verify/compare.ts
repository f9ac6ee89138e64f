/**
 * Pure verification: compares what the workers report from /proc after the restore with
 * the image, modulo the pid map. A restored pidfd can never carry a dumped ino (except an
 * external target's), so identity is compared as classes: which fds share an ino, which
 * share one open file description (kcmp).
 */
import type { FdEntry, Image, PidfdFile, Target, Task } from '../model/image.js';
import { describeFlags } from '../model/flags.js';
import type { FdReport, PidMap, ReportedFd } from '../protocol/messages.js';
import { restoredPid, restoredTid } from '../protocol/pidmap.js';
import { SIGKILL_STATUS, describeWaitStatus } from '../plan/status.js';
import type { PlanOptions } from '../plan/types.js';
import type { ExpectedTarget } from '../kinds/kind.js';
import { kindOf } from '../kinds/registry.js';

export type DifferenceKind =
  | 'missing-report'
  | 'unexpected-report'
  | 'missing-fd'
  | 'extra-fd'
  | 'flags'
  | 'cloexec'
  | 'target'
  | 'exit-status'
  | 'zombie-state'
  | 'ino-class'
  | 'file-class'
  | 'pid';

export interface Difference {
  kind: DifferenceKind;
  /** Dumped pid of the task at fault. */
  pid: number;
  fd?: number;
  /** One sentence naming task, fd, expected and found. */
  message: string;
}

/** What its target's kind (src/kinds, `expect`) says a restored target must look like. */
function expectedTarget(
  target: Target,
  pidMap: PidMap,
  opts: PlanOptions,
  tasks: ReadonlyMap<number, Task>,
): ExpectedTarget {
  return kindOf(target.kind).expect(target, {
    restoredPid: (dumped) => restoredPid(pidMap, dumped),
    restoredTid: (dumped) => restoredTid(pidMap, dumped),
    task: (pid) => tasks.get(pid),
    externalDead: opts.externalDead ?? false,
    pidnsNew: opts.pidnsNew ?? false,
    sigkillStatus: SIGKILL_STATUS,
  });
}

function describeTarget(e: ExpectedTarget): string {
  if (!e.alive) {
    return `a dead process (${e.exitStatus === undefined ? 'no status' : describeWaitStatus(e.exitStatus)})`;
  }
  const zombie =
    e.zombie === undefined
      ? ''
      : ` (a zombie${e.zombie.exitStatus === undefined ? '' : `, ${describeWaitStatus(e.zombie.exitStatus)}`})`;
  return `pid ${e.pid ?? '(unmapped)'}${e.ino === undefined ? '' : ` ino ${e.ino}`}${zombie}`;
}

function describeReported(r: ReportedFd): string {
  if (r.targetPid === -1) {
    return `a dead process (${r.exitStatus === undefined ? 'no status' : describeWaitStatus(r.exitStatus)})`;
  }
  const state = r.targetState === undefined ? '' : ` state ${r.targetState}`;
  const code = r.targetExitCode === undefined ? '' : `, ${describeWaitStatus(r.targetExitCode)}`;
  return `pid ${r.targetPid} ino ${r.ino}${state}${code}`;
}

interface Where {
  pid: number;
  fd: number;
}
const at = (w: Where) => `task ${w.pid} fd ${w.fd}`;

function compareTarget(w: Where, e: ExpectedTarget, r: ReportedFd): Difference[] {
  const diff = (kind: DifferenceKind, what: string): Difference => ({
    kind,
    ...w,
    message: `${at(w)}: ${what}: expected ${describeTarget(e)}, found ${describeReported(r)}`,
  });
  if (!e.alive) {
    if (r.targetPid !== -1) return [diff('target', 'target is not dead')];
    if (r.exitStatus !== e.exitStatus) return [diff('exit-status', 'exit status differs')];
    return [];
  }
  if (r.targetPid !== e.pid) return [diff('target', 'target differs')];
  if (e.ino !== undefined && r.ino !== e.ino)
    return [diff('target', 'external target ino differs')];
  if (r.exitStatus !== undefined) return [diff('exit-status', 'target has exited')];
  if (e.running && r.targetState === 'Z')
    return [diff('zombie-state', 'target is a zombie, not a live task')];
  if (e.zombie !== undefined) {
    if (r.targetState !== 'Z') return [diff('zombie-state', 'target is not a zombie')];
    if (e.zombie.exitStatus !== undefined && r.targetExitCode !== e.zombie.exitStatus)
      return [diff('exit-status', 'zombie exit status differs')];
  }
  return [];
}

function compareFd(
  w: Where,
  entry: FdEntry,
  file: PidfdFile,
  target: ExpectedTarget,
  r: ReportedFd,
): Difference[] {
  const out: Difference[] = [];
  if (r.flags !== file.flags) {
    out.push({
      kind: 'flags',
      ...w,
      message: `${at(w)}: flags ${describeFlags(r.flags)}, expected ${describeFlags(file.flags)}`,
    });
  }
  if (r.cloexec !== entry.cloexec) {
    out.push({
      kind: 'cloexec',
      ...w,
      message: `${at(w)}: close-on-exec is ${r.cloexec ? 'set' : 'clear'}, expected ${entry.cloexec ? 'set' : 'clear'}`,
    });
  }
  return [...out, ...compareTarget(w, target, r)];
}

/** A matched pair: where, the dumped keys, the reported keys. */
interface Match extends Where {
  fileId: number;
  dumpedIno: string;
  reportedIno: string;
  fileClass: string;
}

/**
 * Classes must be the same partition: fds that shared a dumped key share one reported
 * key and no other fds do. One difference per split or merged class.
 */
function compareClasses(
  matches: readonly Match[],
  kind: 'ino-class' | 'file-class',
  dumped: (m: Match) => string,
  reported: (m: Match) => string,
): Difference[] {
  const what = kind === 'ino-class' ? 'one process (pidfs ino)' : 'one open file description';
  const out: Difference[] = [];
  const group = (key: (m: Match) => string) => {
    const g = new Map<string, Match[]>();
    for (const m of matches) g.set(key(m), [...(g.get(key(m)) ?? []), m]);
    return g;
  };
  for (const members of group(dumped).values()) {
    if (new Set(members.map(reported)).size > 1) {
      const first = members[0]!;
      out.push({
        kind,
        pid: first.pid,
        fd: first.fd,
        message: `${members.map(at).join(', ')} shared ${what} at dump but not after restore`,
      });
    }
  }
  for (const members of group(reported).values()) {
    if (new Set(members.map(dumped)).size > 1) {
      const first = members[0]!;
      out.push({
        kind,
        pid: first.pid,
        fd: first.fd,
        message: `${members.map(at).join(', ')} share ${what} after restore but did not at dump`,
      });
    }
  }
  return out;
}

export function compareReports(
  image: Image,
  pidMap: PidMap,
  reports: readonly FdReport[],
  opts: PlanOptions = {},
): Difference[] {
  const files = new Map(image.files.map((f) => [f.id, f]));
  const targets = new Map(image.targets.map((t) => [t.ino, t]));
  const tasks = new Map(image.tasks.map((t) => [t.pid, t]));
  const workers = image.tasks.filter((t) => t.state !== 'zombie').sort((a, b) => a.pid - b.pid);
  const out: Difference[] = [];
  const matches: Match[] = [];
  for (const r of reports) {
    if (!workers.some((t) => t.pid === r.pid)) {
      out.push({
        kind: 'unexpected-report',
        pid: r.pid,
        message: `a report came from task ${r.pid}, which is not a live task of the image`,
      });
    }
  }
  for (const task of workers) {
    const report = reports.find((r) => r.pid === task.pid);
    if (report === undefined) {
      out.push({
        kind: 'missing-report',
        pid: task.pid,
        message: `task ${task.pid} sent no fd report`,
      });
      continue;
    }
    for (const entry of [...task.fds].sort((a, b) => a.fd - b.fd)) {
      const w = { pid: task.pid, fd: entry.fd };
      const r = report.fds.find((x) => x.fd === entry.fd);
      const file = files.get(entry.fileId);
      const target = file && targets.get(file.ino);
      if (file === undefined || target === undefined) continue; // the codec rejects such images
      if (r === undefined) {
        out.push({ kind: 'missing-fd', ...w, message: `${at(w)}: no pidfd there after restore` });
        continue;
      }
      out.push(...compareFd(w, entry, file, expectedTarget(target, pidMap, opts, tasks), r));
      matches.push({
        ...w,
        fileId: entry.fileId,
        dumpedIno: file.ino.toString(),
        reportedIno: r.ino,
        fileClass: r.fileClass,
      });
    }
    for (const r of report.fds) {
      if (!task.fds.some((e) => e.fd === r.fd)) {
        const w = { pid: task.pid, fd: r.fd };
        out.push({
          kind: 'extra-fd',
          ...w,
          message: `${at(w)}: pidfd to ${describeReported(r)} is not in the image`,
        });
      }
    }
  }
  out.push(
    ...compareClasses(
      matches,
      'ino-class',
      (m) => m.dumpedIno,
      (m) => m.reportedIno,
    ),
    ...compareClasses(
      matches,
      'file-class',
      (m) => String(m.fileId),
      (m) => m.fileClass,
    ),
  );
  return out;
}
