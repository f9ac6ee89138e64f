/**
 * Chrome Trace Event JSON (the format of chrome://tracing and the Perfetto UI: an object
 * with `traceEvents`, each with ph/ts/pid/tid/name, ts in microseconds). One process track
 * per machine (the coordinator, each task: pid = the OS pid that ran it), its states as
 * complete slices (`ph: 'X'`), temporary processes and zombies as threads of the process
 * that made them, fd transfers as flow arrows (`s` → `f`, one id per transfer, bound to
 * short `send fds` / `recv fds` slices), phases as global instant markers, failures as
 * instant markers on their track.
 */
import type { Lane, Timeline } from './model.js';

export interface ChromeEvent {
  name: string;
  ph: 'X' | 'i' | 's' | 'f' | 'M';
  ts: number;
  pid: number;
  tid: number;
  dur?: number;
  cat?: string;
  id?: number;
  bp?: 'e';
  s?: 'g' | 'p' | 't';
  args?: Record<string, unknown>;
}

export interface ChromeTrace {
  traceEvents: ChromeEvent[];
  displayTimeUnit: 'ms';
  otherData: Record<string, string>;
}

const us = (ms: number): number => Math.round(ms * 1000 * 1000) / 1000;

/** A marker slice ending at `at` (ms), kept inside the lane's slice that holds `at`. */
function pointSlice(lane: Lane, at: number): { ts: number; dur: number } {
  const holder = lane.slices.find((s) => s.start <= at && at <= s.end);
  const room = holder ? at - holder.start : 0;
  const dur = Math.min(0.01, room);
  return dur > 0 ? { ts: us(at - dur), dur: us(dur) } : { ts: us(at), dur: 1 };
}

export function toChromeTrace(tl: Timeline): ChromeTrace {
  const out: ChromeEvent[] = [];
  const pidOf = new Map<string, number>();
  let synthetic = 0;
  tl.lanes.forEach((lane, i) => {
    // pid 0 = a worker whose pid was never registered; keep tracks apart.
    const pid = lane.pids[0] ?? 10_000_000 + synthetic++;
    pidOf.set(lane.id, pid);
    const name =
      lane.machine === 'coordinator'
        ? `coordinator (pid ${pid})`
        : `task ${lane.task} (restored pid ${lane.pids.join(', ') || '?'})`;
    out.push({ name: 'process_name', ph: 'M', ts: 0, pid, tid: pid, args: { name } });
    out.push({
      name: 'process_sort_index',
      ph: 'M',
      ts: 0,
      pid,
      tid: pid,
      args: { sort_index: i },
    });
    out.push({
      name: 'thread_name',
      ph: 'M',
      ts: 0,
      pid,
      tid: pid,
      args: { name: `${lane.machine} machine` },
    });
    for (const s of lane.slices)
      out.push({
        name: s.state,
        cat: 'state',
        ph: 'X',
        ts: us(s.start),
        dur: us(s.end - s.start),
        pid,
        tid: pid,
        args: { event: s.event, ...(s.open ? { note: 'the trace ends in this state' } : {}) },
      });
    if (lane.exit)
      out.push({
        name: `exit${lane.exit.waitStatus !== undefined ? ` (wait status ${lane.exit.waitStatus})` : ''}`,
        cat: 'process',
        ph: 'i',
        s: 't',
        ts: us(lane.exit.time),
        pid,
        tid: pid,
      });
  });

  let extraTid = 0;
  for (const p of tl.processes) {
    const pid = pidOf.get(p.lane)!;
    const tid = p.pid ?? 20_000_000 + extraTid++;
    out.push({
      name: 'thread_name',
      ph: 'M',
      ts: 0,
      pid,
      tid,
      args: { name: `${p.role} ${p.pid ?? ''} ${p.label}`.replace(/\s+/g, ' ') },
    });
    const end = p.end ?? tl.duration;
    out.push({
      name: `${p.role} ${p.label}`,
      cat: p.role,
      ph: 'X',
      ts: us(p.start),
      dur: us(Math.max(0, end - p.start)),
      pid,
      tid,
      args: {
        ...(p.pid !== undefined ? { pid: p.pid } : {}),
        ...(p.waitStatus !== undefined ? { waitStatus: p.waitStatus } : {}),
        ...(p.end === undefined ? { note: 'no exit in the trace' } : {}),
      },
    });
  }

  tl.transfers.forEach((t, i) => {
    const from = tl.lanes.find((l) => l.id === `task:${t.sender}`)!;
    const to = tl.lanes.find((l) => l.id === `task:${t.receiver}`)!;
    const args = {
      transfer: t.id,
      files: t.files,
      fds: t.fds,
      ...(t.phase ? { phase: t.phase } : {}),
    };
    const id = i + 1;
    const send = pointSlice(from, t.sendTime ?? t.recvTime ?? 0);
    const recv = pointSlice(to, t.recvTime ?? t.sendTime ?? 0);
    const [spid, rpid] = [pidOf.get(from.id)!, pidOf.get(to.id)!];
    out.push({
      name: `send fds → task ${t.receiver}`,
      cat: 'fd',
      ph: 'X',
      ...send,
      pid: spid,
      tid: spid,
      args,
    });
    out.push({ name: 'fd transfer', cat: 'fd', ph: 's', id, ts: send.ts, pid: spid, tid: spid });
    out.push({
      name: `recv fds ← task ${t.sender}`,
      cat: 'fd',
      ph: 'X',
      ...recv,
      pid: rpid,
      tid: rpid,
      args,
    });
    out.push({
      name: 'fd transfer',
      cat: 'fd',
      ph: 'f',
      bp: 'e',
      id,
      ts: recv.ts,
      pid: rpid,
      tid: rpid,
    });
  });

  const coord = pidOf.get('coordinator') ?? pidOf.values().next().value ?? 0;
  for (const ph of tl.phases)
    out.push({
      name: `phase ${ph.name}`,
      cat: 'phase',
      ph: 'i',
      s: 'g',
      ts: us(ph.start),
      pid: coord,
      tid: coord,
    });
  for (const f of tl.failures) {
    const pid = pidOf.get(f.lane)!;
    out.push({
      name: `failed: ${f.message}`,
      cat: 'failure',
      ph: 'i',
      s: 't',
      ts: us(f.time),
      pid,
      tid: pid,
      args: { state: f.state, from: f.from, event: f.event, ...(f.failure ?? {}) },
    });
  }
  return {
    traceEvents: out,
    displayTimeUnit: 'ms',
    otherData: {
      source: 'pidfd-cr trace',
      ...(tl.run ? { run: tl.run } : {}),
      t0: new Date(tl.t0).toISOString(),
      outcome: tl.outcome,
    },
  };
}
