/**
 * `npm run bench` (docs/restore.md "Performance"): in one run, for trees of 1, 9, 33 and
 * 129 tasks (257 with BENCH_TREES=…,257), the median over BENCH_RUNS runs of
 *   - the floor: as many bare `node -e 0` as the restore has workers, started at once;
 *   - the skeleton (bench/skeleton.ts): the design's lower bound;
 *   - the restore to verified, the pidfd phases (every task registered → last report in,
 *     from the coordinator's trace timestamps), the teardown;
 *   - per worker: CPU (all its threads, from /proc before teardown), RSS, PSS, peak RSS;
 * and the dump of the 9-task tree by the CLI against one bare `node -e 0`, alternated.
 * Figures only, no assertions. `--json` prints one JSON object instead of the tables.
 * `--lib DIR` (or BENCH_LIB) takes dumpTree, restoreImage, buildTree and the CLI from the
 * `dist` directory of another build (a before/after comparison; the floor and skeleton
 * stay this build's).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Image } from '../src/model/image.js';
import type { TraceEvent } from '../src/protocol/trace.js';
import type { RestoreOptions } from '../src/restore/options.js';
import type { RestoreResult } from '../src/restore/restore-image.js';
import type { BuiltTree, TreeSpec } from '../src/testing/index.js';
import { cpuMs, loadAverage, mean, median, memory } from './proc.js';
import { floor, runAll, skeleton, type SkeletonRun } from './skeleton.js';
import { BENCH_TREES, DEFAULT_TREES, DUMP_TREE } from './trees.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const TREES = process.env.BENCH_TREES?.split(',').map(Number) ?? DEFAULT_TREES;
const args = process.argv.slice(2);
const JSON_OUT = args.includes('--json');
const libArg = args.indexOf('--lib');
const LIB_DIR = resolve(
  libArg >= 0
    ? args[libArg + 1]!
    : (process.env.BENCH_LIB ?? fileURLToPath(new URL('..', import.meta.url))),
);

/** What the bench takes from a build (the public API, stable across layouts). */
interface Lib {
  dumpTree(rootPid: number): Promise<Image>;
  restoreImage(image: Image, options: RestoreOptions): Promise<RestoreResult>;
  buildTree(spec: TreeSpec, options?: { signal?: AbortSignal }): Promise<BuiltTree>;
  cli: string;
}

function packageBin(packageJson: string): string {
  const { bin } = JSON.parse(readFileSync(packageJson, 'utf8')) as { bin: Record<string, string> };
  return bin['pidfd-cr']!;
}

async function loadLib(dist: string): Promise<Lib> {
  const load = (p: string): Promise<Record<string, unknown>> =>
    import(pathToFileURL(join(dist, p)).href) as Promise<Record<string, unknown>>;
  const index = await load('src/index.js');
  // Before the structure work the test harness was part of the main entry.
  const testing = 'buildTree' in index ? index : await load('src/testing/index.js');
  return {
    dumpTree: index.dumpTree as Lib['dumpTree'],
    restoreImage: index.restoreImage as Lib['restoreImage'],
    buildTree: testing.buildTree as Lib['buildTree'],
    // What `npx pidfd-cr` runs: the package's bin.
    cli: join(dist, '..', packageBin(join(dist, '..', 'package.json'))),
  };
}

const now = (): number => performance.timeOrigin + performance.now();

/**
 * Ctrl-C or SIGTERM: the running restore or tree build is aborted, and the bench stops
 * before its next step; the `finally` blocks take down what it built (nothing is left).
 */
const interrupted = new AbortController();
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => interrupted.abort(signal));
}
const checkInterrupted = (): void => {
  if (interrupted.signal.aborted) throw new Error(`interrupted (${interrupted.signal.reason})`);
};

interface RestoreRun {
  verifiedMs: number;
  /** Every task registered → the last report in (the coordinator leaves its phases). */
  pidfdPhasesMs: number;
  /** Each coordinator state's duration (registering, phases.open-alive, …). */
  states: Record<string, number>;
  /** After the measurements below, until restoreImage returned. */
  teardownMs: number;
  cpuMs: number[];
  rssKb: number[];
  pssKb: number[];
  hwmKb: number[];
}

async function restoreOnce(lib: Lib, image: Image): Promise<RestoreRun> {
  const events: TraceEvent[] = [];
  const stop = new AbortController();
  const workers = new Set(image.tasks.filter((t) => t.state !== 'zombie').map((t) => t.pid));
  let verifiedAt = NaN;
  let measuredAt = NaN;
  const run = {
    cpuMs: [] as number[],
    rssKb: [] as number[],
    pssKb: [] as number[],
    hwmKb: [] as number[],
  };
  const t0 = now();
  const result = await lib.restoreImage(image, {
    hold: true,
    signal: AbortSignal.any([stop.signal, interrupted.signal]),
    workerStderr: 2,
    traceWorkers: false,
    timeoutMs: 600_000,
    limits: { maxProcesses: 8192 },
    trace: (e) => {
      if (e.source === 'coordinator' && (e.kind ?? 'state') === 'state') events.push(e);
    },
    onVerified: ({ pidMap }) => {
      verifiedAt = now();
      for (const p of pidMap.pids) {
        if (!workers.has(p.dumped)) continue;
        run.cpuMs.push(cpuMs(p.restored));
        const m = memory(p.restored);
        run.rssKb.push(m.rss);
        run.pssKb.push(m.pss);
        run.hwmKb.push(m.hwm);
      }
      measuredAt = now();
      stop.abort('measured');
    },
  });
  const end = now();
  checkInterrupted();
  if (!result.ok) throw new Error(`bench restore differs: ${JSON.stringify(result.differences)}`);
  const states: Record<string, number> = {};
  const changes = events.filter((e) => e.from !== e.to);
  changes.forEach((e, i) => {
    const next = changes[i + 1];
    if (next) states[e.to] = (states[e.to] ?? 0) + next.time - e.time;
  });
  const registered = changes.find((e) => e.from === 'registering')?.time ?? NaN;
  // Leaving the phases (to comparing, or a state after it: the trace shows the snapshot
  // after XState's microsteps) is when the last report is in.
  const inPhases = (state: string): boolean => state === 'phases' || state.startsWith('phases.');
  const reportsIn = changes.find((e) => inPhases(e.from) && !inPhases(e.to))?.time ?? NaN;
  return {
    verifiedMs: verifiedAt - t0,
    pidfdPhasesMs: reportsIn - registered,
    states,
    teardownMs: end - measuredAt,
    ...run,
  };
}

interface TreeResult {
  tasks: number;
  workers: number;
  pidfds: number;
  dead: number;
  floorMs: number;
  floor1Ms: number;
  skeletonMs: number;
  skeletonPhasesMs: number;
  verifiedMs: number;
  pidfdPhasesMs: number;
  teardownMs: number;
  states: Record<string, number>;
  /** Per worker, over every run: mean CPU, mean and max RSS/PSS/peak RSS (kB). */
  cpuMs: number;
  rssKb: number;
  pssKb: number;
  hwmKb: number;
  maxPssKb: number;
  runs: { floor: number[]; floor1: number[]; skeleton: SkeletonRun[]; restore: RestoreRun[] };
}

const log = (s: string): void => {
  if (!JSON_OUT) process.stdout.write(s);
};

async function benchTree(lib: Lib, tasks: number, spec: TreeSpec): Promise<TreeResult> {
  const tree = await lib.buildTree(spec, { signal: interrupted.signal });
  let image: Image;
  try {
    image = await lib.dumpTree(tree.rootPid);
  } finally {
    await tree.destroy();
  }
  const workers = image.tasks.filter((t) => t.state !== 'zombie').length;
  const runs: TreeResult['runs'] = { floor: [], floor1: [], skeleton: [], restore: [] };
  await restoreOnce(lib, image); // warm the page cache and write the code cache
  await skeleton(workers);
  for (let i = 0; i < RUNS; i++) {
    checkInterrupted();
    log('.');
    runs.floor.push(await floor(workers));
    runs.floor1.push(await floor(1));
    runs.skeleton.push(await skeleton(workers));
    runs.restore.push(await restoreOnce(lib, image));
  }
  const med = (f: (r: RestoreRun) => number): number => median(runs.restore.map(f));
  const all = (f: (r: RestoreRun) => number[]): number[] => runs.restore.flatMap(f);
  const stateNames = [...new Set(runs.restore.flatMap((r) => Object.keys(r.states)))];
  return {
    tasks,
    workers,
    pidfds: image.tasks.reduce((n, t) => n + t.fds.length, 0),
    dead: image.targets.filter((t) => t.kind === 'dead').length,
    floorMs: median(runs.floor),
    floor1Ms: median(runs.floor1),
    skeletonMs: median(runs.skeleton.map((r) => r.verifiedMs)),
    skeletonPhasesMs: median(runs.skeleton.map((r) => r.phasesMs)),
    verifiedMs: med((r) => r.verifiedMs),
    pidfdPhasesMs: med((r) => r.pidfdPhasesMs),
    teardownMs: med((r) => r.teardownMs),
    states: Object.fromEntries(stateNames.map((s) => [s, med((r) => r.states[s] ?? NaN)])),
    cpuMs: mean(all((r) => r.cpuMs)),
    rssKb: mean(all((r) => r.rssKb)),
    pssKb: mean(all((r) => r.pssKb)),
    hwmKb: mean(all((r) => r.hwmKb)),
    maxPssKb: Math.max(...all((r) => r.pssKb)),
    runs,
  };
}

interface DumpResult {
  tasks: number;
  /** `pidfd-cr dump -t ROOT -D DIR --force`, spawn to exit. */
  cliMs: number;
  floor1Ms: number;
  ratio: number;
  /** dumpTree called in this (warm) process: the dump's own work without start-up. */
  libraryMs: number;
  runs: { cli: number[]; floor1: number[]; library: number[] };
}

async function benchDump(lib: Lib): Promise<DumpResult> {
  const tree = await lib.buildTree(BENCH_TREES.get(DUMP_TREE)!, { signal: interrupted.signal });
  const dir = mkdtempSync(join(tmpdir(), 'pidfd-cr-bench-dump-'));
  const runs: DumpResult['runs'] = { cli: [], floor1: [], library: [] };
  const dump = [
    process.execPath,
    lib.cli,
    'dump',
    '-t',
    String(tree.rootPid),
    '-D',
    dir,
    '--force',
  ];
  try {
    await runAll([dump]); // warm
    await lib.dumpTree(tree.rootPid);
    for (let i = 0; i < Math.max(RUNS, 5) * 2; i++) {
      checkInterrupted();
      runs.floor1.push(await floor(1));
      runs.cli.push(await runAll([dump]));
      const t0 = performance.now();
      await lib.dumpTree(tree.rootPid);
      runs.library.push(performance.now() - t0);
    }
  } finally {
    await tree.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
  const cliMs = median(runs.cli);
  const floor1Ms = median(runs.floor1);
  return {
    tasks: DUMP_TREE,
    cliMs,
    floor1Ms,
    ratio: cliMs / floor1Ms,
    libraryMs: median(runs.library),
    runs,
  };
}

const ms = (x: number, w = 7): string => (Number.isNaN(x) ? '—' : x.toFixed(1)).padStart(w);
const x = (a: number, b: number): string => `${(a / b).toFixed(2)}×`.padStart(6);
const mb = (kb: number): string => (kb / 1024).toFixed(1).padStart(5);

function printTree(r: TreeResult): void {
  log(
    `\r${String(r.tasks).padStart(5)} ${String(r.pidfds).padStart(6)} ${String(r.dead).padStart(4)} |` +
      `${ms(r.floorMs)} |${ms(r.skeletonMs)} ${x(r.skeletonMs, r.floorMs)} |` +
      `${ms(r.verifiedMs)} ${x(r.verifiedMs, r.floorMs)} ${ms(r.verifiedMs / r.workers, 6)} |` +
      `${ms(r.pidfdPhasesMs)} ${ms(r.skeletonPhasesMs)} |${ms(r.teardownMs)} |` +
      `${ms(r.cpuMs, 6)} ${mb(r.rssKb)} ${mb(r.pssKb)} ${mb(r.maxPssKb)}\n`,
  );
}

async function main(): Promise<void> {
  const lib = await loadLib(LIB_DIR);
  const loadStart = loadAverage();
  log(
    `pidfd-cr bench: median of ${RUNS} runs, ms; ${availableParallelism()} CPUs; ` +
      `lib ${LIB_DIR}\n` +
      `floor = the restore's worker count of bare \`node -e 0\` at once; skeleton = the ` +
      `design's bound (empty phases);\nphases = all registered → last report in ` +
      `(restore | skeleton); per worker: CPU ms, RSS, PSS, max PSS (MB)\n\n` +
      `tasks pidfds dead |  floor | skeleton  ratio | verified  ratio /task |` +
      ` phases   skel. | teardn |   CPU   RSS   PSS  max\n`,
  );
  const trees: TreeResult[] = [];
  for (const n of TREES) {
    const spec = BENCH_TREES.get(n);
    if (!spec) throw new Error(`no bench tree of ${n} tasks (${[...BENCH_TREES.keys()]})`);
    const r = await benchTree(lib, n, spec);
    trees.push(r);
    printTree(r);
  }
  const dump = await benchDump(lib);
  const floor1 = median(trees.flatMap((t) => t.runs.floor1).concat(dump.runs.floor1));
  const loadEnd = loadAverage();
  log(
    `\none bare node -e 0: ${ms(floor1, 0)} ms (median of every run)\n` +
      `dump of the ${dump.tasks}-task tree (CLI, spawn to exit): ${ms(dump.cliMs, 0)} ms = ` +
      `${dump.ratio.toFixed(2)}× one node -e 0 (${ms(dump.floor1Ms, 0)} ms, alternated); ` +
      `dumpTree in a warm process ${ms(dump.libraryMs, 0)} ms\n` +
      `load average ${loadStart} → ${loadEnd}\n`,
  );
  if (JSON_OUT) {
    const out = {
      version: 1,
      lib: LIB_DIR,
      node: process.version,
      cpus: availableParallelism(),
      runs: RUNS,
      load: { start: loadStart, end: loadEnd },
      floor1Ms: floor1,
      trees,
      dump,
    };
    process.stdout.write(`${JSON.stringify(out, null, 1)}\n`);
  }
}

await main().catch((err: unknown) => {
  process.stderr.write(`\nbench: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exitCode = interrupted.signal.aborted ? 130 : 1;
});
