/**
 * The program every task of an example tree runs (see builder.ts). It connects to the
 * builder, says hello, and runs the steps it is sent one at a time: spawn children
 * (reserving or inheriting fd numbers), open pidfds at exact fd numbers, make dead
 * processes and dead threads, pass pidfds over SCM_RIGHTS, and finally set the
 * close-on-exec bits and check it holds exactly the pidfds it should. Then it waits
 * until it is killed, or exits when the builder hangs up.
 */
import { PcrError } from '../errors.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import {
  closeFd,
  closeQuiet,
  connectSeqpacket,
  dup3,
  O_CLOEXEC,
  O_NONBLOCK,
  openPath,
  openPidfdByIno,
  pidfdOpen,
  pidfsHandleIno,
  PIDFD_THREAD,
  setCloexec,
  waitPidfd,
} from '../../native/index.js';
import { readPidfd, readPidfds } from '../procfs/index.js';
import { PacketChannel } from './channel.js';
import { accessOpenFlags, type AccessMode } from './plan.js';
import { ENV, type Request, type TaskMessage, type TaskOp } from './protocol.js';
import { checkEnded, makeZombie, spawnEnding, spawnTask } from './spawn-task.js';

const name = process.env[ENV.name] ?? '?';
const socketPath = process.env[ENV.socket] ?? '';
const liveThreads: Worker[] = [];

/** Keep what we got at spawn (close-on-exec from now on), drop any pidfd leaked to us. */
function adoptStartFds(): void {
  const mine = new Set((process.env[ENV.fds] ?? '').split(',').filter(Boolean).map(Number));
  for (const fd of mine) setCloexec(fd, true);
  for (const p of readPidfds(process.pid)) if (!mine.has(p.fd)) closeQuiet(p.fd);
}

/** Puts `tmp` at `fd` (close-on-exec until finalize) and closes `tmp`. */
function place(tmp: number, fd: number): void {
  if (tmp === fd) return;
  dup3(tmp, fd, true);
  closeFd(tmp);
}

const THREAD_CODE = `
const { parentPort } = require('node:worker_threads');
const { readlinkSync } = require('node:fs');
parentPort.postMessage(Number(readlinkSync('/proc/thread-self').split('/').pop()));
parentPort.on('message', () => parentPort.close());
`;

/** A worker thread and its kernel thread id. */
async function startThread(): Promise<{ worker: Worker; tid: number }> {
  const worker = new Worker(THREAD_CODE, { eval: true });
  const tid = await new Promise<number>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  return { worker, tid };
}

async function makeDeadThread(fd: number, openFlags: number): Promise<void> {
  const { worker, tid } = await startThread();
  place(pidfdOpen(tid, openFlags | PIDFD_THREAD), fd);
  const exited = new Promise((resolve) => worker.once('exit', resolve));
  worker.postMessage('end');
  await exited;
  // The 'exit' event can come before the kernel thread is gone: wait for fdinfo Pid -1.
  for (let i = 0; readPidfd(process.pid, fd)?.pid !== -1; i++) {
    if (i > 5000) throw new PcrError('PCR_ERR_TIMEOUT', `thread ${tid} did not end`);
    await sleep(1);
  }
}

function makeDead(fd: number, status: number, openFlags: number, mode?: AccessMode): void {
  const pid = spawnEnding(status);
  place(openPidfd(pid, openFlags, mode), fd); // opened before the reap: PIDFD_INFO_EXIT works
  const reaper = pidfdOpen(pid);
  try {
    checkEnded(pid, waitPidfd(reaper)?.status, status);
  } finally {
    closeFd(reaper);
  }
}

/** pidfd_open, then (with an access mode) a second open through /proc/self/fd. */
function openPidfd(pid: number, openFlags: number, mode?: AccessMode): number {
  const fd = pidfdOpen(pid, openFlags);
  if (mode === undefined) return fd;
  try {
    if (mode === 'by-handle') {
      return openPidfdByIno(pidfsHandleIno(fd), 0o2 | (openFlags & O_NONBLOCK) | O_CLOEXEC);
    }
    const flags = accessOpenFlags(mode) | (openFlags & O_NONBLOCK) | O_CLOEXEC;
    return openPath(`/proc/self/fd/${fd}`, flags);
  } finally {
    closeFd(fd);
  }
}

function finalize(cloexec: Array<[number, boolean]>): void {
  for (const [fd, on] of cloexec) setCloexec(fd, on);
  const want = cloexec.map(([fd]) => fd).sort((a, b) => a - b);
  const have = readPidfds(process.pid).map((p) => p.fd);
  if (want.join(',') !== have.join(',')) {
    throw new PcrError(
      'PCR_ERR_VERIFY',
      `task ${name} holds pidfds [${have}] but should hold [${want}]`,
    );
  }
}

type Reply = Omit<Extract<TaskMessage, { type: 'done' }>, 'type' | 'id'> & { fds?: number[] };

async function run(op: TaskOp, fds: number[]): Promise<Reply> {
  switch (op.op) {
    case 'spawn':
      return {
        pid: spawnTask({ name: op.child, socketPath, inherit: op.inherit, reserve: op.reserve }),
      };
    case 'zombie':
      return { pid: makeZombie(op.status) };
    case 'threads': {
      const started = await Promise.all(Array.from({ length: op.count }, startThread));
      liveThreads.push(...started.map((s) => s.worker));
      return { tids: started.map((s) => s.tid) };
    }
    case 'open':
      place(openPidfd(op.pid, op.openFlags, op.accessMode), op.fd);
      return {};
    case 'dead':
      makeDead(op.fd, op.status, op.openFlags, op.accessMode);
      return {};
    case 'deadThread':
      await makeDeadThread(op.fd, op.openFlags);
      return {};
    case 'dup':
      dup3(op.from, op.fd, true);
      return {};
    case 'give':
      return { fds: [op.fd] };
    case 'take': {
      const [got, ...extra] = fds;
      extra.forEach(closeQuiet);
      if (got === undefined)
        throw new PcrError('PCR_ERR_INTERNAL', `take fd ${op.fd}: no fd attached`);
      place(got, op.fd);
      return {};
    }
    case 'finalize':
      finalize(op.cloexec);
      return {};
  }
}

function main(): void {
  adoptStartFds();
  let queue = Promise.resolve();
  const channel = new PacketChannel(
    connectSeqpacket(socketPath),
    (msg, fds) => {
      const req = msg as Request;
      queue = queue.then(async () => {
        try {
          const { fds: out, ...rest } = await run(req.body, fds);
          channel.send({ type: 'done', id: req.id, ...rest }, out ?? []);
        } catch (err) {
          fds.forEach(closeQuiet);
          channel.send({ type: 'failed', id: req.id, error: (err as Error).message });
        }
      });
    },
    () => process.exit(0), // the builder is gone
  );
  channel.send({ type: 'hello', name, pid: process.pid } satisfies TaskMessage);
}

main();
