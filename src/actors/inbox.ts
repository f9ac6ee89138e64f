/**
 * The fds other workers send us. The listening socket exists from start-up (so a sender
 * never finds it missing), but connections are accepted only once the pid map is known:
 * until then they wait in the backlog, and then only peers whose SO_PEERCRED pid is a
 * restored worker pid are accepted. Each message is a batch (sender, phase, file ids,
 * fds); a receive step takes the batch from its sender with exactly its file ids, and
 * checks the peer pid is the sender's restored pid.
 */
import { fdSocketPath } from '../protocol/paths.js';
import { listenForFds, type FdListener } from '../sys/fd-channel.js';
import { unlinkSync } from 'node:fs';
import { closeQuiet, listenSeqpacket } from '../../native/index.js';
import { decodeFdTransfer } from '../protocol/wire.js';
import type { FdTransfer, PidMap } from '../protocol/messages.js';
import { COORDINATOR_OPENER, type BroadcastPhase, type ReceiveStep } from '../plan/types.js';
import { restoredPid } from '../protocol/pidmap.js';
import { PcrError } from '../errors.js';

export interface Batch {
  transfer: FdTransfer;
  fds: number[];
  peerPid: number;
  /** When it came off the socket (epoch ms, fractional), for the trace. */
  at: number;
}

/** One expected message: its sender, phase and file ids (none: a creator's notice). */
export interface Expected {
  phase: BroadcastPhase;
  step: ReceiveStep;
}

interface Waiter {
  expected: Expected[];
  pidMap: PidMap;
  resolve(batches: Batch[]): void;
  reject(err: Error): void;
}

const sameIds = (a: readonly number[], b: readonly number[]): boolean =>
  a.length === b.length && a.every((x, i) => x === b[i]);

export class FdInbox {
  private readonly batches: Batch[] = [];
  private waiter: Waiter | undefined;
  private listener: FdListener | undefined;
  private expected = new Set<number>();
  /** The coordinator sends us fds from outside our pid namespace (--pidns new). */
  private fromOutside = false;
  private failure: Error | undefined;
  readonly path: string;

  constructor(rundir: string, dumpedPid: number) {
    this.path = fdSocketPath(rundir, dumpedPid);
    // Bound now, accepted later: the backlog holds early connections (see start()).
    this.preListen = listenSeqpacket(this.path, 4096);
  }

  private preListen: number | undefined;

  /**
   * Set before GO when the plan has a receive from COORDINATOR_OPENER: the coordinator
   * lives outside our pid namespace, so its SO_PEERCRED pid here is 0 (the kernel's "not
   * in this namespace"); a peer with pid 0 is then accepted, for those messages only.
   */
  expectFromOutside(): void {
    this.fromOutside = true;
  }

  /** Starts accepting, with the restored worker pids of `pidMap` as allowed peers. */
  setPidMap(pidMap: PidMap): void {
    this.expected = new Set(pidMap.pids.map((p) => p.restored));
    if (this.listener || this.preListen === undefined) return;
    const fd = this.preListen;
    this.preListen = undefined;
    this.listener = listenForFds(this.path, {
      listenFd: fd,
      isExpectedPeer: (pid) => this.expected.has(pid) || (this.fromOutside && pid === 0),
      onMessage: ({ payload, fds }, peerPid) => this.take(payload, fds, peerPid),
      onError: (err) => this.fail(err),
    });
  }

  private take(payload: Buffer, fds: number[], peerPid: number): void {
    let transfer: FdTransfer;
    try {
      transfer = decodeFdTransfer(payload);
    } catch (err) {
      fds.forEach(closeQuiet);
      return this.fail(err as Error);
    }
    if (transfer.fileIds.length !== fds.length) {
      fds.forEach(closeQuiet);
      const n = transfer.fileIds.length;
      return this.fail(
        new PcrError(
          'PCR_ERR_RESTORE',
          `fds from task ${transfer.from}: payload names ${n} files but ${fds.length} fds came`,
        ),
      );
    }
    this.batches.push({ transfer, fds, peerPid, at: performance.timeOrigin + performance.now() });
    this.check();
  }

  private fail(err: Error): void {
    this.failure ??= err;
    this.check();
  }

  /** Resolves with one batch per expected message once all arrived. One receive at a time. */
  receive(expected: Expected[], pidMap: PidMap): Promise<Batch[]> {
    return new Promise((resolve, reject) => {
      this.waiter = { expected, pidMap, resolve, reject };
      this.check();
    });
  }

  cancel(reason: Error): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.reject(reason);
  }

  private check(): void {
    const w = this.waiter;
    if (!w) return;
    if (this.failure) {
      this.waiter = undefined;
      return w.reject(this.failure);
    }
    const found: Batch[] = [];
    for (const { phase, step } of w.expected) {
      const b = this.batches.find(
        (x) =>
          !found.includes(x) &&
          x.transfer.from === step.from &&
          x.transfer.phase === phase &&
          sameIds(
            x.transfer.fileIds,
            step.files.map((f) => f.fileId),
          ),
      );
      if (!b) return;
      found.push(b);
    }
    this.waiter = undefined;
    for (const b of found) this.batches.splice(this.batches.indexOf(b), 1);
    const wrong = found.find(
      (b) =>
        b.peerPid !==
        (b.transfer.from === COORDINATOR_OPENER ? 0 : restoredPid(w.pidMap, b.transfer.from)),
    );
    if (wrong) {
      found.forEach((b) => b.fds.forEach(closeQuiet));
      return w.reject(
        new PcrError(
          'PCR_ERR_RESTORE',
          `fds claiming to come from task ${wrong.transfer.from} came from pid ${wrong.peerPid}`,
        ),
      );
    }
    w.resolve(found);
  }

  /**
   * Stops listening, ends a pending receive (rejected), closes whatever was received and
   * not taken, removes the socket.
   */
  close(): void {
    if (this.waiter)
      this.cancel(new PcrError('PCR_ERR_RESTORE', 'receive cancelled: inbox closed'));
    this.listener?.close();
    if (this.preListen !== undefined) closeQuiet(this.preListen);
    this.preListen = undefined;
    for (const b of this.batches.splice(0)) b.fds.forEach(closeQuiet);
    removeSocket(this.path);
  }
}

/**
 * unlink, ENOENT ignored. Not rmSync: its first call loads Node's rimraf module, ≈ 0.8 ms
 * of CPU in finalize (measured, docs/restore.md "Performance").
 */
function removeSocket(path: string): void {
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}
