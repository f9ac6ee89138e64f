/**
 * Messages between the example builder and its task processes (task-main.ts). One JSON
 * object per packet on a SEQPACKET socket; pidfds travel attached (SCM_RIGHTS).
 */
import type { AccessMode } from './plan.js';

/** What a task is asked to do. Names are already resolved to pids. */
export type TaskOp =
  | { op: 'spawn'; child: string; inherit: Array<[number, number]>; reserve: number[] }
  | { op: 'zombie'; status: number }
  | { op: 'threads'; count: number }
  | { op: 'open'; fd: number; pid: number; openFlags: number; accessMode?: AccessMode }
  | { op: 'dead'; fd: number; status: number; openFlags: number; accessMode?: AccessMode }
  | { op: 'deadThread'; fd: number; openFlags: number }
  | { op: 'dup'; fd: number; from: number }
  /** Reply carries a copy of fd (SCM_RIGHTS). */
  | { op: 'give'; fd: number }
  /** The request carries one fd, to install at `fd`. */
  | { op: 'take'; fd: number }
  | { op: 'finalize'; cloexec: Array<[number, boolean]> };

export interface Request {
  type: 'request';
  id: number;
  body: TaskOp;
}

export type TaskMessage =
  | { type: 'hello'; name: string; pid: number }
  | { type: 'done'; id: number; pid?: number; tids?: number[] }
  | { type: 'failed'; id: number; error: string };

/** Environment of a task process. */
export const ENV = {
  socket: 'PCR_EXAMPLE_SOCKET',
  name: 'PCR_EXAMPLE_NAME',
  /** Comma-separated fds the task got at spawn (reserved or inherited). */
  fds: 'PCR_EXAMPLE_FDS',
} as const;
