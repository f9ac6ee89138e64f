/**
 * Trees the example builder cannot make, for system tests: a Node process started with a
 * small ES module script (killed and reaped after the test), a one-task tree that holds
 * pidfd_open(pid, flags) at a given fd, not close-on-exec, and its restore.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Image } from '../../src/model/image.js';
import { restoreImage } from '../../src/restore/restore-image.js';
import { checkRestored, exitStatusThroughCopy } from './restored-view.js';
import { readPidfds } from '../../src/procfs/index.js';
import { descendantsOf, fdinfo, type FdinfoView } from './proc-view.js';
import { waitGone } from './restore-run.js';
import { kill, spawn as spawnNative } from '../../native/index.js';

const SIGKILL = 9;

const NATIVE = new URL('../../native/index.js', import.meta.url).href;

export type After = { after(fn: () => unknown): void };

/**
 * `node -e script` (ESM) started with posix_spawn, not child_process: libuv would
 * waitpid() a child_process child on SIGCHLD and eat the ptrace-stop reports a dump of
 * it waits for. SIGKILLed and reaped after the test.
 */
export function startNode(t: After, script: string): number {
  const pid = spawnNative({
    path: process.execPath,
    argv: ['node', '--input-type=module', '-e', script],
    closeFrom: 3,
  });
  t.after(async () => {
    killQuiet(pid);
    if ((await waitGone([pid])).length > 0) throw new Error(`process ${pid} did not go`);
  });
  return pid;
}

export function killQuiet(pid: number): void {
  try {
    kill(pid, SIGKILL);
  } catch {
    // gone already
  }
}

/** Polls `ready` every millisecond for up to 10 s; throws naming `what` if it never is. */
export async function waitUntil(what: string, ready: () => boolean): Promise<void> {
  for (let i = 0; i < 10_000; i++) {
    if (ready()) return;
    await sleep(1);
  }
  throw new Error(`${what}: not after 10 s`);
}

/** A one-task tree holding pidfd_open(pid, flags) at `fd` (not close-on-exec). */
export async function holdPidfd(t: After, pid: number, flags: number, fd: number): Promise<number> {
  const task = startNode(
    t,
    `const n = await import(${JSON.stringify(NATIVE)});
     const fd = n.pidfdOpen(${pid}, ${flags});
     n.dup3(fd, ${fd}, false); n.closeFd(fd);
     setInterval(() => {}, 1e9);`,
  );
  // Ready once fd is its only pidfd (the one pidfd_open gave is closed after the dup3).
  const only = (): boolean =>
    readPidfds(task)
      .map((p) => p.fd)
      .join() === String(fd);
  await waitUntil(`process ${task} holding only a pidfd at ${fd}`, only);
  return task;
}

/**
 * Restores a tree that holds a pidfd at fd 5 (holdPidfd), with hold; in onVerified looks
 * from /proc: checkRestored (unless externalDead), fdinfo of fd 5 and, with externalDead,
 * the exit status through a copy of it; then takes the tree down.
 */
export async function restoreHeld(image: Image, externalDead = false) {
  const parent = mkdtempSync(join(tmpdir(), 'pcr-held-test-'));
  const stop = new AbortController();
  let problems: string[] | undefined;
  let everyone: number[] = [];
  let fd5: FdinfoView | undefined;
  let status5: number | undefined;
  try {
    const result = await restoreImage(image, {
      hold: true,
      signal: stop.signal,
      runDirParent: parent,
      timeoutMs: 60_000,
      externalDead,
      onVerified: ({ pidMap }) => {
        const root = pidMap.pids[0]!.restored;
        everyone = [root, ...descendantsOf(root)];
        fd5 = fdinfo(root, 5);
        if (externalDead) status5 = exitStatusThroughCopy(root, 5);
        else problems = checkRestored(image, pidMap, process.pid);
        stop.abort('checked');
      },
    });
    return { result, problems, everyone, fd5, status5, left: readdirSync(parent) };
  } finally {
    rmSync(parent, { recursive: true, force: true });
  }
}
