/**
 * Live non-leader threads of this process, as targets of PIDFD_THREAD pidfds. Node's V8
 * platform workers and libuv threadpool threads are started early and live as long as
 * the process (test/system/actors-open.test.ts, 'helper threads outlive activity'); when
 * a task needs more distinct threads than that, worker_threads are started, each parked
 * on a timer and unref'd so it never keeps the process alive.
 */
import { readdirSync, readlinkSync } from 'node:fs';
import { Worker } from 'node:worker_threads';

const started: Worker[] = [];

/** Threads of this process other than the main thread, lowest tid first. */
export function helperThreads(): number[] {
  return readdirSync('/proc/self/task')
    .map(Number)
    .filter((tid) => tid !== process.pid)
    .sort((a, b) => a - b);
}

const PARKED_THREAD = `
const { parentPort } = require('node:worker_threads');
const link = require('node:fs').readlinkSync('/proc/thread-self');
parentPort.postMessage(Number(link.split('/').pop()));
setInterval(() => {}, 1 << 30);
`;

function startParkedThread(): Promise<number> {
  return new Promise((resolve, reject) => {
    const w = new Worker(PARKED_THREAD, { eval: true });
    w.once('message', (tid: number) => {
      w.unref();
      started.push(w);
      resolve(tid);
    });
    w.once('error', reject);
  });
}

/** `count` distinct live non-leader tids of this process. */
export async function reserveThreads(count: number): Promise<number[]> {
  const tids = helperThreads();
  while (tids.length < count) {
    const tid = await startParkedThread();
    if (!tids.includes(tid)) tids.push(tid);
  }
  return tids.slice(0, count);
}

/** The tid of the calling thread (for checks). */
export const threadSelf = (): number => Number(readlinkSync('/proc/thread-self').split('/').pop());
