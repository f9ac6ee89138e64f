/**
 * The bench's two references, measured in the same run as the restore: the floor (bare
 * `node -e 0` processes started at once, posix_spawn, the workers' environment) and the
 * design's lower bound (skeleton workers, bench/skeleton-worker.ts).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Router } from 'zeromq';
import { encodeToWorker } from '../src/protocol/wire.js';
import type { CoordinatorMessage } from '../src/protocol/messages.js';
import { spawnClean } from '../src/sys/spawn-clean.js';
import { workerEnv } from '../src/launch/spawn-worker.js';
import { pidfdOpen, waitPidfd, closeQuiet, WEXITED } from '../native/index.js';
import { whenReadable } from '../src/sys/readiness.js';

/** The environment of a worker (NODE_OPTIONS, NODE_EXTRA_CA_CERTS… dropped). */
export const benchEnv = (): Record<string, string> =>
  workerEnv({ dumpedPid: 0, rundir: '/', reservedFds: [], stderrFd: null });

/**
 * Starts one process per argv at once (posix_spawn, `env`, stdin and stdout /dev/null,
 * stderr ours) and waits until all exited: wall ms. Throws if one exits non-zero.
 */
export async function runAll(argvs: readonly string[][], env = benchEnv()): Promise<number> {
  const t0 = performance.now();
  const fds = argvs.map((argv) =>
    pidfdOpen(spawnClean({ path: process.execPath, argv, env, stdio: [null, null, 2] })),
  );
  await Promise.all(fds.map((fd) => whenReadable(fd)));
  const ms = performance.now() - t0;
  const statuses = fds.map((fd) => {
    const status = waitPidfd(fd, WEXITED)?.status;
    closeQuiet(fd);
    return status;
  });
  const bad = statuses.findIndex((s) => s !== 0);
  if (bad >= 0) throw new Error(`${argvs[bad]!.slice(1).join(' ')}: status ${statuses[bad]}`);
  return ms;
}

/** `n` bare `node -e 0` started at once: wall ms until the last exited. */
export const floor = (n: number): Promise<number> =>
  runAll(Array.from({ length: n }, () => [process.execPath, '-e', '0']));

const SKELETON = fileURLToPath(new URL('./skeleton-start.cjs', import.meta.url));

export interface SkeletonRun {
  /** From the first spawn to the last FD_REPORT (the analogue of "verified"). */
  verifiedMs: number;
  /** Every HELLO in → GO → the last FD_REPORT (the restore's "pidfd phases"). */
  phasesMs: number;
}

/**
 * The design's lower bound: `n` skeleton workers (bench/skeleton-worker.ts: Node + koffi
 * + the workers' ZMTP DEALER + xstate + protobuf, code-cached; HELLO, then one GO played through the
 * machine and answered by an empty FD_REPORT, then TEARDOWN) started at once.
 */
export async function skeleton(n: number): Promise<SkeletonRun> {
  const dir = mkdtempSync(join(tmpdir(), 'pidfd-cr-bench-'));
  const address = `ipc://${join(dir, 'ctl')}`;
  const router = new Router({ linger: 0 });
  await router.bind(address);
  const base = benchEnv();
  const pidMap = { pids: [], tids: [] };
  const broadcast = async (ids: Buffer[], m: CoordinatorMessage): Promise<void> => {
    const frame = encodeToWorker(m);
    for (const id of ids) await router.send([id, frame]);
  };
  try {
    const t0 = performance.now();
    const fds = Array.from({ length: n }, (_, i) => {
      const pid = spawnClean({
        path: process.execPath,
        argv: [process.execPath, SKELETON],
        env: { ...base, SKELETON_ADDR: address, SKELETON_ID: String(i + 1) },
        stdio: [null, null, null],
      });
      return pidfdOpen(pid);
    });
    const marks: number[] = [];
    const played = (async () => {
      const ids: Buffer[] = [];
      let answers = 0;
      for await (const [id] of router) {
        if (marks.length === 0 && ids.length < n) ids.push(id!);
        if (++answers < n) continue;
        answers = 0;
        marks.push(performance.now());
        if (marks.length === 2) return broadcast(ids, { type: 'TEARDOWN', reason: 'bench' });
        await broadcast(ids, { type: 'GO', pidMap });
      }
    })();
    await Promise.all(fds.map((fd) => whenReadable(fd)));
    const statuses = fds.map((fd) => {
      const status = waitPidfd(fd, WEXITED)?.status;
      closeQuiet(fd);
      return status;
    });
    // Each exits 0 only after its TEARDOWN: then GO was played.
    if (statuses.some((s) => s !== 0)) throw new Error(`skeleton workers ended: ${statuses}`);
    await played;
    // marks: all HELLOs, then all reports.
    return { verifiedMs: marks[1]! - t0, phasesMs: marks[1]! - marks[0]! };
  } finally {
    router.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
