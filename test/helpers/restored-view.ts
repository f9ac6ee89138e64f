/**
 * An independent check of a restored tree against its image, from the outside: /proc,
 * kcmp, pidfd_getfd + PIDFD_GET_INFO. Nothing here uses the restore's own report. Returns
 * one sentence per problem; an empty list means the tree is what the image says.
 */
import { kcmpFile, pidfdGetInfo, PIDFD_INFO, withFdCopy } from '../../native/index.js';
import type { Image, Target } from '../../src/model/image.js';
import type { PidMap } from '../../src/protocol/messages.js';
import {
  fdLink,
  fdNumbers,
  fdinfo,
  fileFlags,
  parentOf,
  procState,
  exitCodeField,
  childrenOf,
  comm,
} from './proc-view.js';
import { readdirSync } from 'node:fs';

const O_CLOEXEC = 0o2000000;

interface Held {
  task: number;
  restored: number;
  fd: number;
  fileId: number;
  target: Target;
  ino: bigint;
}

/** Exit status of the reaped target of fd `fd` of process `pid`, via a copy of the fd. */
export function exitStatusThroughCopy(pid: number, fd: number): number | undefined {
  return withFdCopy(pid, fd, (copy) => {
    const info = pidfdGetInfo(copy, PIDFD_INFO.EXIT);
    return info.hasExit ? info.exitCode : undefined;
  });
}

const tidsOf = (pid: number): number[] => readdirSync(`/proc/${pid}/task`).map(Number);

export function checkRestored(image: Image, map: PidMap, rootParent: number): string[] {
  const problems: string[] = [];
  const r = (dumped: number): number => map.pids.find((p) => p.dumped === dumped)?.restored ?? -99;
  const targets = new Map(image.targets.map((t) => [t.ino, t]));
  const files = new Map(image.files.map((f) => [f.id, f]));
  const held: Held[] = [];
  const threadTid = new Map<bigint, number>();

  for (const task of image.tasks) {
    const pid = r(task.pid);
    const name = `task ${task.pid} (restored ${pid})`;
    if (pid < 0) {
      problems.push(`${name}: not in the pid map`);
      continue;
    }
    const wantParent = task.pid === image.rootPid ? rootParent : r(task.ppid);
    if (parentOf(pid) !== wantParent) {
      problems.push(`${name}: parent ${parentOf(pid)}, expected ${wantParent}`);
    } else if (task.pid !== image.rootPid && !childrenOf(wantParent).includes(pid)) {
      problems.push(`${name}: not among the children of ${wantParent}`);
    }
    if (comm(pid) !== task.comm.slice(0, 15))
      problems.push(`${name}: comm '${comm(pid)}', expected '${task.comm}'`);
    if (task.state === 'zombie') {
      if (procState(pid) !== 'Z') problems.push(`${name}: state ${procState(pid)}, expected Z`);
      if (exitCodeField(pid) !== task.exitStatus) {
        problems.push(`${name}: exit code ${exitCodeField(pid)}, expected ${task.exitStatus}`);
      }
      continue;
    }
    for (const f of task.fds) {
      const where = `${name} fd ${f.fd}`;
      if (fdLink(pid, f.fd) !== 'anon_inode:[pidfd]') {
        problems.push(`${where}: is ${fdLink(pid, f.fd)}, not a pidfd`);
        continue;
      }
      const file = files.get(f.fileId)!;
      const target = targets.get(file.ino)!;
      const info = fdinfo(pid, f.fd);
      // fdinfo ORs in the fd's close-on-exec; the file's own O_CLOEXEC is in F_GETFL.
      const flags = (info.flags & ~O_CLOEXEC) | (fileFlags(pid, f.fd) & O_CLOEXEC);
      if (flags !== file.flags) {
        problems.push(`${where}: flags 0${flags.toString(8)}, expected 0${file.flags.toString(8)}`);
      }
      if (((info.flags & O_CLOEXEC) !== 0) !== f.cloexec)
        problems.push(`${where}: cloexec is not ${f.cloexec}`);
      held.push({
        task: task.pid,
        restored: pid,
        fd: f.fd,
        fileId: f.fileId,
        target,
        ino: info.ino,
      });
      problems.push(...checkTarget(where, pid, f.fd, info.pid, info.ino, target, r, threadTid));
    }
    problems.push(
      ...extraPidfds(
        name,
        pid,
        task.fds.map((f) => f.fd),
      ),
    );
  }
  problems.push(...checkClasses(held));
  return problems;
}

/**
 * Every pidfd in /proc/P/fd that the image does not put there: the "no other fd" half of
 * each class (an extra pidfd to a target, or sharing a file, is invisible otherwise).
 */
function extraPidfds(name: string, pid: number, imageFds: readonly number[]): string[] {
  return fdNumbers(pid)
    .filter((fd) => !imageFds.includes(fd) && fdLink(pid, fd) === 'anon_inode:[pidfd]')
    .map((fd) => {
      const info = fdinfo(pid, fd);
      return `${name} fd ${fd}: a pidfd (target pid ${info.pid}, ino ${info.ino}) that is not in the image`;
    });
}

function checkTarget(
  where: string,
  pid: number,
  fd: number,
  shownPid: number,
  ino: bigint,
  t: Target,
  r: (d: number) => number,
  threadTid: Map<bigint, number>,
): string[] {
  const out: string[] = [];
  switch (t.kind) {
    case 'in-tree-alive':
    case 'in-tree-zombie':
      if (shownPid !== r(t.taskPid))
        out.push(`${where}: target pid ${shownPid}, expected ${r(t.taskPid)} (task ${t.taskPid})`);
      break;
    case 'dead': {
      if (shownPid !== -1) out.push(`${where}: target pid ${shownPid}, expected -1 (reaped)`);
      const status = exitStatusThroughCopy(pid, fd);
      if (t.exitStatus !== undefined && status !== t.exitStatus) {
        out.push(`${where}: exit status ${status}, expected ${t.exitStatus}`);
      }
      break;
    }
    case 'thread': {
      const owner = r(t.taskPid);
      if (shownPid === owner || !tidsOf(owner).includes(shownPid)) {
        out.push(`${where}: target ${shownPid} is not a non-leader thread of ${owner}`);
      }
      const seen = threadTid.get(t.ino);
      if (seen !== undefined && seen !== shownPid)
        out.push(`${where}: thread target split over tids ${seen} and ${shownPid}`);
      threadTid.set(t.ino, shownPid);
      break;
    }
    case 'external':
      if (shownPid !== t.pid || ino !== t.ino) {
        out.push(
          `${where}: external target is pid ${shownPid} ino ${ino}, expected pid ${t.pid} ino ${t.ino}`,
        );
      }
      break;
  }
  return out;
}

/** Same dumped ino ⇔ same restored ino; same dumped file ⇔ kcmp 0, across the tree. */
function checkClasses(held: Held[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < held.length; i++) {
    for (let j = 0; j < i; j++) {
      const a = held[i]!;
      const b = held[j]!;
      const names = `task ${a.task} fd ${a.fd} / task ${b.task} fd ${b.fd}`;
      const sameTarget = a.target.ino === b.target.ino;
      if (sameTarget !== (a.ino === b.ino))
        out.push(`${names}: same target is ${sameTarget} in the image, ${!sameTarget} restored`);
      const sameFile = a.fileId === b.fileId;
      const kcmp = kcmpFile(a.restored, a.fd, b.restored, b.fd) === 0;
      if (sameFile !== kcmp)
        out.push(`${names}: same open file is ${sameFile} in the image, ${kcmp} restored`);
    }
  }
  return out;
}
