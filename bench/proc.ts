/** What the bench reads of a process from /proc, and small statistics. */
import { readdirSync, readFileSync } from 'node:fs';

/**
 * CPU time of every live thread of `pid` so far, ms: the sum of the first field of
 * /proc/PID/task/TID/schedstat (ns, exact), or utime + stime of /proc/PID/stat (ticks of
 * 10 ms) when schedstat is missing.
 */
export function cpuMs(pid: number): number {
  try {
    let ns = 0;
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    }
    if (Number.isFinite(ns) && ns > 0) return ns / 1e6;
  } catch {
    // no schedstat (CONFIG_SCHEDSTATS off): below
  }
  const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}

export interface Memory {
  /** kB */
  rss: number;
  /** Proportional set size, kB: shared pages divided among their users. */
  pss: number;
  /** Peak RSS (VmHWM), kB. */
  hwm: number;
}

export function memory(pid: number): Memory {
  const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const field = (text: string, name: string): number => {
    const m = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text);
    return m ? Number(m[1]) : NaN;
  };
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return { rss: field(rollup, 'Rss'), pss: field(rollup, 'Pss'), hwm: field(status, 'VmHWM') };
}

/** 1-minute load average. */
export function loadAverage(): number {
  return Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
}

/** The lower median (an observed value). NaN for none. */
export function median(xs: readonly number[]): number {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.floor((s.length - 1) / 2)]!;
}

export function mean(xs: readonly number[]): number {
  const s = xs.filter((x) => !Number.isNaN(x));
  return s.length === 0 ? NaN : s.reduce((a, b) => a + b, 0) / s.length;
}
