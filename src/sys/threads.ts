/**
 * Live non-leader threads of this process, as targets of PIDFD_THREAD pidfds. Node's V8
 * platform workers and libuv threadpool threads are started early and live as long as
 * the process (test/system/actors-open.test.ts, 'helper threads outlive activity'); when
 * a task needs more distinct threads than that, worker_threads are started, each parked
 * on a timer and unref'd so it never keeps the process alive. `node:worker_threads` is
 * loaded only then: loading it costs a worker ≈ 5 ms of CPU at start-up.
 */
import { readdirSync, readlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Worker } from 'node:worker_threads';

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

/** A require, not import(): the bundled worker runs in a vm.Script, which has no
 * dynamic import. */
const loadWorkerThreads = (): typeof import('node:worker_threads') =>
  createRequire(import.meta.url)('node:worker_threads') as typeof import('node:worker_threads');

function startParkedThread(): Promise<number> {
  const { Worker } = loadWorkerThreads();
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
