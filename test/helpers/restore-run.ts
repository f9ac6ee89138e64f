/**
 * Shared steps of the runtime's system tests: build + dump a scenario, run a restore in
 * a private parent directory, and wait (bounded, no timing assertion) for processes to
 * disappear, reaping those that were orphaned to us.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { buildTree, type BuiltTree, type TreeSpec } from '../../src/testing/index.js';
import { dumpTree } from '../../src/dump/index.js';
import type { Image } from '../../src/model/image.js';
import { waitpid, WNOHANG, prctl, PR_SET_CHILD_SUBREAPER } from '../../native/index.js';
import { exists } from './proc-view.js';

export interface Dumped {
  tree: BuiltTree;
  image: Image;
  /** A fresh directory for run directories and files of this test. */
  dir: string;
}

type After = { after(fn: () => unknown): void };

export async function buildAndDump(t: After, spec: TreeSpec): Promise<Dumped> {
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  const tree = await buildTree(spec);
  t.after(() => tree.destroy());
  const image = await dumpTree(tree.rootPid);
  const dir = mkdtempSync(join(tmpdir(), 'pcr-runtime-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return { tree, image, dir };
}

/** Reaps `pid` if it is our (adopted) child and dead; true once it no longer exists. */
function reapIfOurs(pid: number): boolean {
  try {
    waitpid(pid, WNOHANG);
  } catch {
    // not our child
  }
  return !exists(pid);
}

/** Waits until every pid is gone (reaping adopted orphans); returns those still there. */
export async function waitGone(pids: readonly number[], limitMs = 15_000): Promise<number[]> {
  const deadline = Date.now() + limitMs;
  let left = pids.filter((p) => !reapIfOurs(p));
  while (left.length > 0 && Date.now() < deadline) {
    await sleep(20);
    left = left.filter((p) => !reapIfOurs(p));
  }
  return left;
}

/** SIGKILLs every pid still there and waits until they are gone; returns those left. */
export function killAll(pids: readonly number[]): Promise<number[]> {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
  return waitGone(pids);
}
