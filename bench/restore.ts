/**
 * `npm run bench`: restore wall time and per-phase times for trees of 1, 9 (1 + 8, 104
 * pidfds, 32 dead) and 33 tasks, against the floor measured in the same run: starting the
 * same number of bare `node -e 0` processes at once (posix_spawn, same environment as the
 * workers). Also the peak RSS (VmHWM) of each worker. Figures only, no assertions.
 * Targets (docs/restore.md): 9 tasks total <= 1.5x floor, pidfd phases after all workers
 * are up <= 20 ms.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Router } from 'zeromq';
import { encodeToWorker } from '../src/protocol/wire.js';
import type { CoordinatorMessage } from '../src/protocol/messages.js';
import { BROADCAST_PHASES } from '../src/plan/types.js';
import { buildTree, type TreeSpec } from '../src/testing/index.js';
import { dumpTree } from '../src/dump/index.js';
import type { Image } from '../src/model/image.js';
import { restoreImage } from '../src/restore/restore-image.js';
import type { TraceEvent } from '../src/protocol/trace.js';
import { spawnClean } from '../src/sys/spawn-clean.js';
import { workerEnv } from '../src/launch/spawn-worker.js';
import { pidfdOpen, waitPidfd, closeQuiet, WEXITED } from '../native/index.js';
import { whenReadable } from '../src/sys/readiness.js';
import { deadStatuses, benchmark, tree33 } from '../test/fixtures/scenarios.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 5);
/** Only the trees whose task count is listed (e.g. `BENCH_TREES=9`); default all. */
const TREES = process.env.BENCH_TREES?.split(',').map(Number);

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.floor((s.length - 1) / 2)]!;
};

/** Starts `n` bare `node -e 0` at once and waits until all exited: wall ms. */
async function floor(n: number): Promise<number> {
  const env = workerEnv({ dumpedPid: 0, rundir: '/', reservedFds: [], stderrFd: null });
  const t0 = performance.now();
  const fds = Array.from({ length: n }, () => {
    const pid = spawnClean({
      path: process.execPath,
      argv: [process.execPath, '-e', '0'],
      env,
      stdio: [null, null, null],
    });
    return pidfdOpen(pid);
  });
  await Promise.all(fds.map((fd) => whenReadable(fd)));
  const ms = performance.now() - t0;
  for (const fd of fds) {
    waitPidfd(fd, WEXITED);
    closeQuiet(fd);
  }
  return ms;
}

const SKELETON = fileURLToPath(new URL('./skeleton-start.cjs', import.meta.url));

interface SkeletonRun {
  /** From the first spawn to the last PHASE_DONE of `verify` (the analogue of "verified"). */
  verifiedMs: number;
  /** The four pidfd-phase barriers (open-alive … finalize) once every HELLO is in. */
  phasesMs: number;
}

/**
 * The design's lower bound: `n` skeleton workers (bench/skeleton-worker.ts: Node + koffi
 * + zeromq + xstate + protobuf, code-cached; HELLO, then each phase as an empty barrier
 * through the machine, then TEARDOWN) started at once.
 */
async function skeleton(n: number): Promise<SkeletonRun> {
  const dir = mkdtempSync(join(tmpdir(), 'pidfd-cr-bench-'));
  const address = `ipc://${join(dir, 'ctl')}`;
  const router = new Router({ linger: 0 });
  await router.bind(address);
  const base = workerEnv({ dumpedPid: 0, rundir: '/', reservedFds: [], stderrFd: null });
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
      const phases = [...BROADCAST_PHASES];
      let answers = 0;
      for await (const [id] of router) {
        if (phases.length === BROADCAST_PHASES.length && ids.length < n) ids.push(id!);
        if (++answers < n) continue;
        answers = 0;
        marks.push(performance.now());
        const phase = phases.shift();
        if (!phase) return broadcast(ids, { type: 'TEARDOWN', reason: 'bench' });
        await broadcast(ids, { type: 'PHASE', phase, pidMap });
      }
    })();
    await Promise.all(fds.map((fd) => whenReadable(fd)));
    const statuses = fds.map((fd) => {
      const status = waitPidfd(fd, WEXITED)?.status;
      closeQuiet(fd);
      return status;
    });
    // Each exits 0 only after its TEARDOWN: then every phase was played.
    if (statuses.some((s) => s !== 0)) throw new Error(`skeleton workers ended: ${statuses}`);
    await played;
    // marks: all HELLOs, then the end of open-alive, dead, kill-temp, finalize, verify.
    return { verifiedMs: marks[5]! - t0, phasesMs: marks[4]! - marks[0]! };
  } finally {
    router.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const PHASE_STATES = [
  'phases.open-alive',
  'phases.dead',
  'phases.kill-temp',
  'phases.finalize',
  'phases.verify',
];

interface Run {
  verifiedMs: number;
  totalMs: number;
  phases: Record<string, number>;
  rssKb: number[];
  cpuMs: number[];
}

/** utime + stime of a process in ms (clock ticks of 10 ms: USER_HZ 100). */
function cpuMs(pid: number): number {
  const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}

function vmHwmKb(pid: number): number {
  const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

async function restoreOnce(image: Image): Promise<Run> {
  const events: TraceEvent[] = [];
  const stop = new AbortController();
  let verifiedAt = 0;
  let rssKb: number[] = [];
  let cpu: number[] = [];
  const t0 = performance.timeOrigin + performance.now();
  const result = await restoreImage(image, {
    hold: true,
    signal: stop.signal,
    workerStderr: null,
    traceWorkers: false,
    trace: (e) => {
      if (e.source === 'coordinator') events.push(e);
    },
    onVerified: ({ pidMap }) => {
      verifiedAt = performance.timeOrigin + performance.now();
      const workers = new Set(image.tasks.filter((t) => t.state !== 'zombie').map((t) => t.pid));
      const mine = pidMap.pids.filter((p) => workers.has(p.dumped));
      rssKb = mine.map((p) => vmHwmKb(p.restored));
      cpu = mine.map((p) => cpuMs(p.restored));
      stop.abort('measured');
    },
  });
  const end = performance.timeOrigin + performance.now();
  if (!result.ok) throw new Error(`bench restore differs: ${JSON.stringify(result.differences)}`);
  const at = (state: string): number => events.find((e) => e.to === state)?.time ?? NaN;
  const marks = [t0, ...PHASE_STATES.map(at), verifiedAt];
  const names = ['spawn+register', 'open-alive', 'dead', 'kill-temp', 'finalize', 'verify'];
  const phases: Record<string, number> = {};
  names.forEach((n, i) => (phases[n] = marks[i + 1]! - marks[i]!));
  phases['teardown'] = end - verifiedAt;
  return { verifiedMs: verifiedAt - t0, totalMs: end - t0, phases, rssKb, cpuMs: cpu };
}

async function dumpSpec(spec: TreeSpec): Promise<Image> {
  const tree = await buildTree(spec);
  try {
    return await dumpTree(tree.rootPid);
  } finally {
    await tree.destroy();
  }
}

const f = (x: number): string => x.toFixed(1).padStart(7);

async function main(): Promise<void> {
  const trees: Array<[string, TreeSpec]> = [
    ['1 task', deadStatuses],
    ['9 tasks', benchmark],
    ['33 tasks', tree33],
  ];
  console.log(`pidfd-cr restore bench: median of ${RUNS} runs (ms)\n`);
  for (const [name, spec] of trees) {
    if (TREES && !TREES.includes(parseInt(name, 10))) continue;
    const image = await dumpSpec(spec);
    const workers = image.tasks.filter((t) => t.state !== 'zombie').length;
    const pidfds = image.tasks.reduce((n, t) => n + t.fds.length, 0);
    const runs: Run[] = [];
    const floors: number[] = [];
    const skeletons: SkeletonRun[] = [];
    await restoreOnce(image); // warm the page cache
    await skeleton(workers);
    for (let i = 0; i < RUNS; i++) {
      floors.push(await floor(workers));
      skeletons.push(await skeleton(workers));
      runs.push(await restoreOnce(image));
    }
    const fl = median(floors);
    const sk = median(skeletons.map((r) => r.verifiedMs));
    const skPhases = median(skeletons.map((r) => r.phasesMs));
    const verified = median(runs.map((r) => r.verifiedMs));
    const total = median(runs.map((r) => r.totalMs));
    const phase = (k: string): number => median(runs.map((r) => r.phases[k]!));
    const pidfdPhases = median(
      runs.map((r) =>
        ['open-alive', 'dead', 'kill-temp', 'finalize'].reduce((s, k) => s + r.phases[k]!, 0),
      ),
    );
    const rss = runs.flatMap((r) => r.rssKb);
    const cpu = runs.flatMap((r) => r.cpuMs);
    console.log(`${name}: ${workers} workers, ${pidfds} pidfds`);
    console.log(`  floor (${workers} x node -e 0 at once) ${f(fl)}`);
    console.log(
      `  skeleton to verified (bound)      ${f(sk)}   ratio ${(sk / fl).toFixed(2)}x floor`,
    );
    console.log(`  skeleton pidfd phases (bound)     ${f(skPhases)}`);
    console.log(
      `  restore to verified               ${f(verified)}   ratio ${(verified / fl).toFixed(2)}x floor`,
    );
    console.log(
      `  restore incl. teardown            ${f(total)}   ratio ${(total / fl).toFixed(2)}x floor`,
    );
    for (const k of [
      'spawn+register',
      'open-alive',
      'dead',
      'kill-temp',
      'finalize',
      'verify',
      'teardown',
    ]) {
      console.log(`    ${k.padEnd(31)}${f(phase(k))}`);
    }
    console.log(`  pidfd phases after all workers up ${f(pidfdPhases)}`);
    console.log(
      `  CPU per worker to verified        mean ${(cpu.reduce((a, b) => a + b, 0) / cpu.length).toFixed(0)} ms (utime+stime)`,
    );
    console.log(
      `  peak RSS per worker (VmHWM)       mean ${(rss.reduce((a, b) => a + b, 0) / rss.length / 1024).toFixed(1)} MB, max ${(Math.max(...rss) / 1024).toFixed(1)} MB\n`,
    );
  }
}

await main();
