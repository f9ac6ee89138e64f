/**
 * `node dist/bench/tiny.js [rounds]`: what a temporary process x costs, three ways
 * (docs/restore.md "Session 7"):
 *   - sh:   `/bin/sh -c 'read _; exit N'` by posix_spawn (sys/spawn-clean.ts), x until
 *           session 7;
 *   - tiny: native/tiny.ts, clone3 CLONE_VM without exec (what startTemp does now);
 *   - fork: native/tiny.ts with its own copy of our memory (clone3 without CLONE_VM).
 * Each round starts 4 x (a 9-task tree has 28 for 9 workers), runs a fixed JavaScript
 * workload while they wait (what a worker does between starting its x and killing them),
 * then closes their fd 0 and reaps them. Per x: our CPU to start it, the x's own CPU
 * (/proc/P/schedstat of the zombie, exact), our CPU to reap it; per round: the
 * workload's CPU and our minor page faults while the x wait (copy-on-write after a fork).
 */
import { readFileSync } from 'node:fs';
import {
  closeQuiet,
  pidfdOpen,
  seqpacketPair,
  spawnTiny,
  waitPidfd,
  WEXITED,
  WNOWAIT,
} from '../native/index.js';
import { spawnClean } from '../src/sys/spawn-clean.js';
import { median } from './proc.js';

type Variant = 'sh' | 'tiny' | 'fork';
const PER_ROUND = 4;
const ROUNDS = Number(process.argv[2] ?? 200);

interface X {
  pid: number;
  pidfd: number;
  control: number;
}

function start(variant: Variant, code: number): X {
  const [ours, theirs] = seqpacketPair();
  try {
    if (variant === 'sh') {
      const pid = spawnClean({
        path: '/bin/sh',
        argv: ['sh', '-c', `read _; exit ${code}`],
        env: { PATH: '/usr/bin:/bin' },
        stdio: [theirs, null, null],
      });
      return { pid, pidfd: pidfdOpen(pid), control: ours };
    }
    const x = spawnTiny({
      death: { exitCode: code },
      waitOn: theirs,
      comm: 'pcr-temp',
      pidfd: true,
      ...(variant === 'fork' ? { ownMemory: true } : {}),
    });
    return { pid: x.pid, pidfd: x.pidfd, control: ours };
  } finally {
    closeQuiet(theirs);
  }
}

const cpu = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};
const minorFaults = (): number => {
  const s = readFileSync('/proc/self/stat', 'utf8');
  return Number(s.slice(s.lastIndexOf(')') + 2).split(' ')[7]);
};
const schedMs = (pid: number): number =>
  Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]) / 1e6;

/** A worker-like burst of allocation and property writes (≈ a few ms). */
let sink = 0;
function workload(): void {
  const list: Array<{ id: number; name: string; tags: number[] }> = [];
  for (let i = 0; i < 20_000; i++) list.push({ id: i, name: `task ${i}`, tags: [i, i + 1] });
  sink += JSON.stringify(list).length;
}

interface Row {
  startMs: number[];
  childMs: number[];
  reapMs: number[];
  workMs: number[];
  faults: number[];
}

function round(variant: Variant | 'none', row: Row): void {
  const t0 = cpu();
  const xs =
    variant === 'none' ? [] : Array.from({ length: PER_ROUND }, (_, i) => start(variant, i));
  const t1 = cpu();
  const f0 = minorFaults();
  workload();
  const t2 = cpu();
  const f1 = minorFaults();
  let own = 0;
  for (const x of xs) {
    closeQuiet(x.control);
    waitPidfd(x.pidfd, WEXITED | WNOWAIT); // dead, not reaped: its schedstat is final
    own += schedMs(x.pid);
  }
  const t3 = cpu();
  for (const x of xs) {
    waitPidfd(x.pidfd, WEXITED);
    closeQuiet(x.pidfd);
  }
  const t4 = cpu();
  if (xs.length > 0) {
    row.startMs.push((t1 - t0) / xs.length);
    row.childMs.push(own / xs.length);
    row.reapMs.push((t4 - t3) / xs.length);
  }
  row.workMs.push(t2 - t1);
  row.faults.push(f1 - f0);
}

const variants: Array<Variant | 'none'> = ['none', 'sh', 'tiny', 'fork'];
const rows = new Map(
  variants.map((v) => [v, { startMs: [], childMs: [], reapMs: [], workMs: [], faults: [] } as Row]),
);
for (let i = 0; i < 20; i++)
  for (const v of variants)
    round(v, { startMs: [], childMs: [], reapMs: [], workMs: [], faults: [] });
for (let i = 0; i < ROUNDS; i++) for (const v of variants) round(v, rows.get(v)!);

const f = (xs: number[], d = 3): string => (xs.length ? median(xs).toFixed(d) : '-').padStart(8);
process.stdout.write(
  `pidfd-cr bench tiny: median of ${ROUNDS} rounds of ${PER_ROUND} x; CPU ms (${sink > 0 ? 'ok' : ''})\n` +
    `variant   start/x  x's own  reap/x  workload  minflt\n`,
);
for (const [v, r] of rows) {
  process.stdout.write(
    `${v.padEnd(8)}${f(r.startMs)} ${f(r.childMs)}${f(r.reapMs)}${f(r.workMs, 2)}${f(r.faults, 0)}\n`,
  );
}
