/**
 * Spawning processes of an example tree: Node task processes (task-main.js) with their
 * fd numbers reserved or inherited at spawn, and short-lived `sh` processes that end
 * with a chosen wait status.
 */
import { fileURLToPath } from 'node:url';
import {
  closeQuiet,
  dupAbove,
  O_CLOEXEC,
  openPath,
  pidfdOpen,
  spawn,
  waitPidfd,
  WEXITED,
  WNOWAIT,
} from '../../native/index.js';
import { PcrError } from '../errors.js';
import { ENV } from './protocol.js';
import { statusScript } from './validate.js';

/** The compiled task program that every task of an example tree runs. */
// From ../testing: this module may also run inside the CLI bundle (dist/src/cli/cli.cjs).
export const TASK_MAIN = fileURLToPath(new URL('../testing/task-main.js', import.meta.url));

const O_RDWR = 2;

export interface TaskSpawn {
  name: string;
  socketPath: string;
  /** [fd in this process, fd in the child]: the child shares these open files (fork). */
  inherit: ReadonlyArray<readonly [number, number]>;
  /** fd numbers the child keeps free for later (a /dev/null placeholder each). */
  reserve: readonly number[];
  /** The child leads a new session and process group (the tree's root). */
  setsid?: boolean;
}

/**
 * posix_spawn of a task process. Sources are first copied above every number involved,
 * so no dup2 can overwrite a source another dup2 still needs. stdin and stdout of the
 * task are /dev/null; stderr is inherited.
 */
export function spawnTask(t: TaskSpawn): number {
  const targets = [...t.inherit.map(([, to]) => to), ...t.reserve];
  const floor = Math.max(2, ...targets, ...t.inherit.map(([from]) => from)) + 1;
  const opened: number[] = [];
  try {
    const nullFd = openPath('/dev/null', O_RDWR | O_CLOEXEC);
    opened.push(nullFd);
    const devNull = dupAbove(nullFd, floor);
    opened.push(devNull);
    const sources = t.inherit.map(([from]) => {
      const copy = dupAbove(from, floor);
      opened.push(copy);
      return copy;
    });
    return spawn({
      path: process.execPath,
      argv: [process.execPath, TASK_MAIN],
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        [ENV.socket]: t.socketPath,
        [ENV.name]: t.name,
        [ENV.fds]: targets.join(','),
      },
      dup2: [
        [devNull, 0],
        [devNull, 1],
        ...t.inherit.map(([, to], i): [number, number] => [sources[i]!, to]),
        ...t.reserve.map((fd): [number, number] => [devNull, fd]),
      ],
      ...(t.setsid ? { setsid: true } : {}),
    });
  } finally {
    opened.forEach(closeQuiet);
  }
}

/** A `sh` that ends with exactly `status`; it holds no fd above 2. Not reaped here. */
export function spawnEnding(status: number, opts: { setsid?: boolean } = {}): number {
  return spawn({
    path: '/bin/sh',
    argv: ['sh', '-c', statusScript(status)],
    closeFrom: 3,
    ...(opts.setsid ? { setsid: true } : {}),
  });
}

/**
 * Spawns a `sh` that ends with `status` and waits until it has ended WITHOUT reaping it
 * (WNOWAIT): it stays a zombie of this process. Checks how it really ended.
 */
export function makeZombie(status: number, opts: { setsid?: boolean } = {}): number {
  const pid = spawnEnding(status, opts);
  const fd = pidfdOpen(pid);
  try {
    checkEnded(pid, waitPidfd(fd, WEXITED | WNOWAIT)?.status, status);
  } finally {
    closeQuiet(fd);
  }
  return pid;
}

/** Never assume how a helper died: compare with what was asked for. */
export function checkEnded(pid: number, got: number | undefined, want: number): void {
  if (got !== want) {
    throw new PcrError(
      'PCR_ERR_INTERNAL',
      `helper ${pid} ended with status ${got ?? 'none'}, wanted ${want}`,
    );
  }
}
