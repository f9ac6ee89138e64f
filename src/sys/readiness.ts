/**
 * Waiting for an fd without blocking the event loop: a libuv poll handle (koffi), no
 * threads. koffi calls the callback as (status, events) although its .d.ts says
 * (events) (measured; see shared notes/node-stack.md), so the arguments are normalised.
 */
import { uvPoll, type UvPollHandle } from '../../native/index.js';

export interface Readiness {
  readable: boolean;
  /** Only when asked for (watchFd's wantWritable). */
  writable: boolean;
  disconnect: boolean;
  /** libuv status: negative errno when polling failed. */
  status: number;
}

export interface Watch {
  stop(): void;
}

function normalise(args: unknown[]): Readiness {
  const [first, second] = args;
  const status = typeof first === 'number' ? first : 0;
  const ev = (typeof first === 'object' ? first : second) as Partial<Readiness> | undefined;
  return {
    status,
    readable: ev?.readable === true,
    writable: ev?.writable === true,
    disconnect: ev?.disconnect === true,
  };
}

/** Calls `onReady` each time `fd` becomes readable (or its peer hangs up) until stopped. */
export function watchReadable(fd: number, onReady: (r: Readiness) => void): Watch {
  return watchFd(fd, onReady);
}

export interface FdWatch extends Watch {
  /** Wake also (or no longer) when `fd` is writable: only while output waits for room. */
  wantWritable(on: boolean): void;
}

/**
 * watchReadable that can also wait for room to write: one poll handle per fd (libuv
 * takes only one), its events changed in place.
 */
export function watchFd(fd: number, onReady: (r: Readiness) => void): FdWatch {
  const callback = ((...args: unknown[]) => onReady(normalise(args))) as never;
  let handle: UvPollHandle | undefined = uvPoll(fd, { readable: true, disconnect: true }, callback);
  let writable = false;
  return {
    wantWritable(on) {
      if (on === writable || !handle) return;
      writable = on;
      handle.start({ readable: true, disconnect: true, writable: on }, callback);
    },
    stop() {
      handle?.close();
      handle = undefined;
    },
  };
}

/** Resolves once `fd` is readable or hung up (a pidfd is readable once its process exits). */
export function whenReadable(fd: number, signal?: AbortSignal): Promise<Readiness> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = (): void => {
      watch.stop();
      reject(signal?.reason);
    };
    const watch = watchReadable(fd, (r) => {
      watch.stop();
      signal?.removeEventListener('abort', onAbort);
      resolve(r);
    });
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
