/**
 * What the host receives on its hand-off socket (proto/handoff.proto, docs/restore.md
 * "Hand-off"): the coordinator's Hello, and per task its pidfds in batches of at most
 * 253 (SCM_MAX_FD), each with a descriptor naming every attached fd: its dumped number,
 * its file flags, its open file, its target's kind and identity. Pure: built from the
 * image and the pid map; the workers only attach the fds.
 */
import { pidfdcr } from '../../gen/pb.js';
import type { Image } from '../model/image.js';
import type { HandoffBatch, PidMap } from './messages.js';
import { restoredPid, restoredTid } from './pidmap.js';

const pb = pidfdcr.handoff;
/** The kernel's SCM_MAX_FD: fds one SCM_RIGHTS message may carry. */
export const HANDOFF_BATCH_MAX = 253;

export type HandoffPidfd = pidfdcr.handoff.IPidfd;

export function encodeHandoffHello(tasks: number, pidfds: number): Uint8Array {
  return pb.Message.encode({ hello: { coordinatorPid: process.pid, tasks, pidfds } }).finish();
}

/** Decodes one message of the socket (for hosts written in TypeScript, and the tests). */
export function decodeHandoffMessage(bytes: Uint8Array): pidfdcr.handoff.Message {
  return pb.Message.decode(bytes);
}

/** Every pidfd of task `dumped` as the host will see it described. */
export function describeTaskPidfds(image: Image, map: PidMap, dumped: number): HandoffPidfd[] {
  const task = image.tasks.find((t) => t.pid === dumped);
  if (task === undefined) return [];
  const files = new Map(image.files.map((f) => [f.id, f]));
  const targets = new Map(image.targets.map((t) => [t.ino, t]));
  return task.fds.map((e) => {
    const file = files.get(e.fileId);
    const target = file && targets.get(file.ino);
    let restored = -1;
    if (target) {
      switch (target.kind) {
        case 'in-tree-alive':
        case 'in-tree-zombie':
          restored = restoredPid(map, target.taskPid) ?? -1;
          break;
        case 'thread':
          restored = restoredTid(map, target.tid) ?? -1;
          break;
        case 'external':
          restored = target.pid;
          break;
        default:
          restored = -1;
      }
    }
    return {
      fd: e.fd,
      flags: file?.flags ?? 0,
      cloexec: e.cloexec,
      fileId: e.fileId,
      kind: target?.kind ?? '',
      targetPid: target?.pid ?? 0,
      targetRestoredPid: restored,
      targetTid: target?.tid ?? 0,
      targetTaskPid: target?.taskPid ?? 0,
      ...(target?.exitStatus === undefined ? {} : { exitStatus: target.exitStatus }),
    };
  });
}

/** The SCM_RIGHTS messages task `dumped` sends to the host, fds in descriptor order. */
export function handoffBatches(image: Image, map: PidMap, dumped: number): HandoffBatch[] {
  const all = describeTaskPidfds(image, map, dumped);
  const count = Math.max(1, Math.ceil(all.length / HANDOFF_BATCH_MAX));
  const batches: HandoffBatch[] = [];
  for (let index = 0; index < count; index++) {
    const fds = all.slice(index * HANDOFF_BATCH_MAX, (index + 1) * HANDOFF_BATCH_MAX);
    const payload = pb.Message.encode({
      batch: {
        dumpedPid: dumped,
        restoredPid: restoredPid(map, dumped) ?? 0,
        index,
        count,
        fds,
      },
    }).finish();
    batches.push({ payload, fds: fds.map((f) => f.fd ?? 0) });
  }
  return batches;
}
