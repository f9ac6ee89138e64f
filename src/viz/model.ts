/**
 * The restore as a timeline, built from trace events (events.ts): one lane per machine
 * (the coordinator, one per task), the state slices of each lane, the phases, fd
 * transfers, temporary processes, zombies, failures, and how often each state and
 * transition was visited. Works on a v1 trace without the completed kinds (docs/trace.md):
 * lanes come from `source`, states from `from`/`to`, fd transfers and temporary processes
 * from `details` (peer, files, fd, ino); with process / fd-transfer / register events
 * those are used instead.
 */
import { byTime, kindOf, taskOf, type FailureFacts, type VizEvent } from './events.js';

export interface Slice {
  state: string;
  /** ms since the first event. */
  start: number;
  end: number;
  /** The event that entered the state. */
  event: string;
  /** The trace has no event leaving this (non-final) state. */
  open: boolean;
}

export interface Lane {
  /** "coordinator" or "task:<dumped pid>". */
  id: string;
  machine: 'coordinator' | 'task';
  /** Dumped pid (tasks). */
  task?: number;
  /** OS pid(s) that ran the machine (restored pids for tasks). */
  pids: number[];
  start: number;
  end: number;
  slices: Slice[];
  /** Process exit, when the trace has it. */
  exit?: { time: number; waitStatus?: number };
  registered?: number;
}

export interface PhaseBand {
  name: string;
  start: number;
  end: number;
}

export interface Transfer {
  id: string;
  sender: number;
  receiver: number;
  /** When the sender sent (ms); undefined if the trace lacks that side. */
  sendTime?: number;
  recvTime?: number;
  files: number[];
  fds: number[];
  phase?: string;
}

export interface ProcessBar {
  /** The lane it is drawn on (the creator / the parent). */
  lane: string;
  role: 'temp' | 'zombie';
  pid?: number;
  /** Temp: dumped pidfs ino; zombie: dumped pid. */
  label: string;
  start: number;
  end?: number;
  waitStatus?: number;
}

export interface FailureMark {
  time: number;
  lane: string;
  /** The state entered with the failure. */
  state: string;
  from: string;
  event: string;
  phase?: string;
  message: string;
  failure?: FailureFacts;
}

export interface StateVisit {
  machine: 'coordinator' | 'task';
  /** Trace state path ("become-creator.opening", "phases.dead"). */
  state: string;
  count: number;
  /** Total time spent in it, ms, over every lane of the machine. */
  ms: number;
}

export interface TransitionVisit {
  machine: 'coordinator' | 'task';
  from: string;
  to: string;
  event: string;
  count: number;
}

export interface Timeline {
  run?: string;
  /** Epoch ms of the first event: every other time is relative to it. */
  t0: number;
  /** ms of the last event. */
  duration: number;
  lanes: Lane[];
  phases: PhaseBand[];
  transfers: Transfer[];
  processes: ProcessBar[];
  failures: FailureMark[];
  visits: StateVisit[];
  transitions: TransitionVisit[];
  /** Frames from non-workers, ignored by the coordinator. */
  ignoredFrames: number;
  /** Did the trace have the completed-v1 kinds (process, fd-transfer, register)? */
  completed: boolean;
  /** The coordinator's last state ("done", "failed", or where the trace stops). */
  outcome: string;
  warnings: string[];
  /** The events, time-sorted, times relative to t0. */
  events: VizEvent[];
}

const FINAL = new Set(['done', 'failed']);

/** Every prefix of a state path: "a.b.c" → ["a", "a.b", "a.b.c"]. */
export function statePrefixes(state: string): string[] {
  const parts = state.split('.');
  return parts.map((_, i) => parts.slice(0, i + 1).join('.'));
}

export function buildTimeline(input: readonly VizEvent[], warningsIn: string[] = []): Timeline {
  const warnings = [...warningsIn];
  const sorted = [...input].sort(byTime);
  const t0 = sorted[0]?.time ?? 0;
  const events = sorted.map((e) => ({ ...e, time: e.time - t0 }));
  const duration = events.length > 0 ? events[events.length - 1]!.time : 0;
  const completed = events.some((e) => ['process', 'fd-transfer', 'register'].includes(kindOf(e)));

  const lanes = new Map<string, Lane>();
  const laneOf = (e: VizEvent): Lane => {
    let lane = lanes.get(e.source);
    if (!lane) {
      const task = taskOf(e.source);
      lane = {
        id: e.source,
        machine: task === undefined ? 'coordinator' : 'task',
        ...(task !== undefined ? { task } : {}),
        pids: [],
        start: e.time,
        end: e.time,
        slices: [],
      };
      lanes.set(e.source, lane);
    }
    lane.end = Math.max(lane.end, e.time);
    if (e.pid > 0 && !lane.pids.includes(e.pid)) lane.pids.push(e.pid);
    return lane;
  };

  const failures: FailureMark[] = [];
  const transitions = new Map<string, TransitionVisit>();
  const transfers = new Map<string, Transfer>();
  const processes: ProcessBar[] = [];
  const openProcs = new Map<string, ProcessBar>();
  let ignoredFrames = 0;
  // Worker process events seen before the worker's first state event.
  const pendingWorkers: VizEvent[] = [];
  // Restored pid → dumped pid, from register events.
  const registrations = new Map<number, number>();

  for (const e of events) {
    const lane = laneOf(e);
    const kind = kindOf(e);
    if (e.details.error !== undefined || e.details.failure !== undefined) {
      failures.push({
        time: e.time,
        lane: lane.id,
        state: e.to,
        from: e.from,
        event: e.event,
        ...(e.details.phase ? { phase: e.details.phase } : {}),
        message: e.details.failure?.message ?? e.details.error ?? '',
        ...(e.details.failure ? { failure: e.details.failure } : {}),
      });
    }
    if (kind === 'state') {
      if (e.from === e.to) continue;
      const last = lane.slices[lane.slices.length - 1];
      if (last) {
        last.end = e.time;
        last.open = false;
      }
      lane.slices.push({ state: e.to, start: e.time, end: e.time, event: e.event, open: true });
      const key = `${lane.machine}|${e.from}|${e.to}|${e.event}`;
      const t = transitions.get(key);
      if (t) t.count++;
      else
        transitions.set(key, {
          machine: lane.machine,
          from: e.from,
          to: e.to,
          event: e.event,
          count: 1,
        });
    } else if (kind === 'fd-transfer' && e.transfer) {
      const x = e.transfer;
      let t = transfers.get(x.id);
      if (!t) {
        t = { id: x.id, sender: x.sender, receiver: x.receiver, files: [], fds: [] };
        if (e.details.phase) t.phase = e.details.phase;
        transfers.set(x.id, t);
      }
      if (x.side === 'send') t.sendTime = e.time;
      else t.recvTime = e.time;
      if (x.files.length > 0) t.files = x.files;
      if (x.side === 'recv' || t.fds.length === 0) t.fds = x.fds;
    } else if (kind === 'process' && e.process) {
      const p = e.process;
      const at = (epoch: number | undefined) => (epoch !== undefined ? epoch - t0 : e.time);
      if (p.role === 'worker' && p.task !== undefined) {
        const w = lanes.get(`task:${p.task}`);
        if (w && p.action === 'exit')
          w.exit = {
            time: at(p.exitTime),
            ...(p.waitStatus !== undefined ? { waitStatus: p.waitStatus } : {}),
          };
        else if (w && p.action === 'spawn') w.start = Math.min(w.start, at(p.startTime));
        else if (!w) pendingWorkers.push(e);
      } else if (p.role === 'temp' || p.role === 'zombie') {
        const key = `${p.role}:${p.pid}`;
        if (p.action === 'spawn') {
          const bar: ProcessBar = {
            lane: '',
            role: p.role,
            pid: p.pid,
            label: p.role === 'temp' ? `ino ${p.ino ?? '?'}` : `task ${p.task ?? '?'}`,
            start: at(p.startTime),
          };
          bar.lane =
            p.role === 'temp' && p.creator !== undefined ? `task:${p.creator}` : `ppid:${p.ppid}`;
          processes.push(bar);
          openProcs.set(key, bar);
        } else {
          const bar = openProcs.get(key);
          if (bar) {
            bar.end = at(p.exitTime);
            if (p.waitStatus !== undefined) bar.waitStatus = p.waitStatus;
            openProcs.delete(key);
          } else
            warnings.push(`an exit of ${p.role} process ${p.pid} that the trace never spawned`);
        }
      }
    } else if (kind === 'register' && e.register) {
      const w = lanes.get(`task:${e.register.task}`);
      if (w) w.registered = e.time;
      registrations.set(e.register.pid, e.register.task);
    } else if (kind === 'frame-ignored') {
      ignoredFrames++;
    }
  }

  // Workers whose process events came before their first state event.
  for (const e of pendingWorkers) {
    const p = e.process!;
    const w = lanes.get(`task:${p.task}`);
    if (!w) {
      warnings.push(`worker process ${p.pid} (task ${p.task}) has no state events`);
      continue;
    }
    const at =
      p.action === 'exit' ? (p.exitTime ?? e.time + t0) - t0 : (p.startTime ?? e.time + t0) - t0;
    if (p.action === 'exit')
      w.exit = { time: at, ...(p.waitStatus !== undefined ? { waitStatus: p.waitStatus } : {}) };
    else w.start = Math.min(w.start, at);
  }

  // Close every lane's last slice: at the process exit, or where the trace ends.
  for (const lane of lanes.values()) {
    const last = lane.slices[lane.slices.length - 1];
    if (!last) continue;
    const leaf = last.state.split('.').pop()!;
    if (FINAL.has(leaf)) {
      last.open = false;
      last.end = last.start;
    } else {
      last.end = Math.max(last.start, lane.exit?.time ?? duration);
    }
    lane.end = Math.max(lane.end, last.end, lane.exit?.time ?? 0);
  }

  const laneList = [...lanes.values()].sort((a, b) =>
    a.machine !== b.machine ? (a.machine === 'coordinator' ? -1 : 1) : a.start - b.start,
  );
  const taskLanes = new Set(laneList.filter((l) => l.machine === 'task').map((l) => l.task!));
  const laneByPid = new Map<number, string>();
  for (const l of laneList) for (const pid of l.pids) laneByPid.set(pid, l.id);
  for (const [pid, task] of registrations) laneByPid.set(pid, `task:${task}`);

  // Processes drawn on their parent's lane (zombies) or the creator's (temps).
  for (const bar of processes) {
    if (bar.lane.startsWith('ppid:')) {
      const ppid = Number(bar.lane.slice(5));
      bar.lane = laneByPid.get(ppid) ?? '';
    }
    if (!lanes.has(bar.lane)) {
      warnings.push(
        `${bar.role} process ${bar.pid} (${bar.label}) belongs to no task of the trace`,
      );
      bar.lane = 'coordinator';
    }
  }

  // What the trace does not record as its own events (a v1 trace; or a runtime that
  // records processes but not yet fd transfers or temps) is inferred from the details.
  const hasTransfers = events.some((e) => kindOf(e) === 'fd-transfer');
  const hasTemps = events.some((e) => e.process?.role === 'temp');
  inferFromDetails(events, hasTransfers ? undefined : transfers, hasTemps ? undefined : processes);

  const transferList = [...transfers.values()].filter((t) => {
    const unknown = [t.sender, t.receiver].filter((p) => !taskLanes.has(p));
    if (unknown.length > 0)
      warnings.push(
        `fd transfer ${t.id} names task ${unknown.join(', ')}, which has no events in the trace`,
      );
    return unknown.length === 0;
  });
  for (const t of transferList) {
    if (t.sendTime === undefined) warnings.push(`fd transfer ${t.id}: the trace has no send side`);
    if (t.recvTime === undefined)
      warnings.push(`fd transfer ${t.id}: the trace has no receive side (never received?)`);
  }
  const zombies = knownNonWorkers(events);
  const unknownPeers = new Set<string>();
  for (const e of events)
    for (const p of e.details.peer ?? [])
      if (!taskLanes.has(p) && !zombies.has(p))
        unknownPeers.add(
          `${e.source} names task ${p} (details.peer), which has no events in the trace`,
        );
  warnings.push(...unknownPeers);

  const coordinator = lanes.get('coordinator');
  const outcome =
    coordinator?.slices[coordinator.slices.length - 1]?.state ?? '(no coordinator events)';
  if (!coordinator) warnings.push('the trace has no coordinator events');
  else if (!FINAL.has(outcome))
    warnings.push(
      `the trace ends with the coordinator in ${outcome}: the run was cut off (killed, or the file is incomplete)`,
    );

  // One band from GO to the last report (each task runs its own steps in it: its lane
  // shows them); a trace of the older barrier design has one band per phase.
  const phases: PhaseBand[] = (coordinator?.slices ?? [])
    .filter((s) => s.state === 'phases' || s.state.startsWith('phases.'))
    .map((s) => ({
      name: s.state === 'phases' ? 'GO → reports' : s.state.slice('phases.'.length),
      start: s.start,
      end: s.end,
    }));

  return {
    ...(events.find((e) => e.run)?.run ? { run: events.find((e) => e.run)!.run! } : {}),
    t0,
    duration: Math.max(duration, ...laneList.map((l) => l.end)),
    lanes: laneList,
    phases,
    transfers: transferList,
    processes,
    failures,
    visits: visitsOf(laneList),
    transitions: [...transitions.values()],
    ignoredFrames,
    completed,
    outcome,
    warnings: [...new Set(warnings)],
    events,
  };
}

/** Dumped pids a trace names that are not machines (zombies of process events). */
function knownNonWorkers(events: readonly VizEvent[]): Set<number> {
  const s = new Set<number>();
  for (const e of events) if (e.process?.task !== undefined) s.add(e.process.task);
  return s;
}

/** v1: fd transfers from `wait-for-fd → …` (details.peer = senders) and `sending → …`. */
function inferFromDetails(
  events: readonly VizEvent[],
  transfers: Map<string, Transfer> | undefined,
  processes: ProcessBar[] | undefined,
): void {
  let n = 0;
  for (const e of events) {
    const receiver = taskOf(e.source);
    if (receiver === undefined || kindOf(e) !== 'state') continue;
    if (transfers && e.from === 'wait-for-fd' && e.details.peer && !e.details.error) {
      for (const sender of e.details.peer) {
        const send = events.find(
          (s) =>
            s.source === `task:${sender}` &&
            s.from === 'sending' &&
            (s.details.peer ?? []).includes(receiver) &&
            s.details.phase === e.details.phase,
        );
        const id = `${e.details.phase ?? 'fd'}:${sender}->${receiver}#${n++}`;
        transfers.set(id, {
          id,
          sender,
          receiver,
          ...(send ? { sendTime: send.time } : {}),
          recvTime: e.time,
          files: e.details.files ?? [],
          fds: e.details.fd ?? [],
          ...(e.details.phase ? { phase: e.details.phase } : {}),
        });
      }
    }
    if (processes && e.details.ino && e.details.ino.length > 0) {
      // spawnTemp done: the temporaries live until the creator's kill-temp ends.
      const end = events.find(
        (k) => k.source === e.source && k.from === 'kill-temp' && k.time >= e.time,
      );
      for (const ino of e.details.ino)
        processes.push({
          lane: e.source,
          role: 'temp',
          label: `ino ${ino}`,
          start: e.time,
          ...(end ? { end: end.time } : {}),
        });
    }
  }
}

function visitsOf(lanes: Lane[]): StateVisit[] {
  const visits = new Map<string, StateVisit>();
  for (const lane of lanes) {
    let previous: string[] = [];
    for (const s of lane.slices) {
      const prefixes = statePrefixes(s.state);
      for (const p of prefixes) {
        const key = `${lane.machine}|${p}`;
        let v = visits.get(key);
        if (!v) visits.set(key, (v = { machine: lane.machine, state: p, count: 0, ms: 0 }));
        // A parent state is entered once for a run of its children.
        if (!previous.includes(p)) v.count++;
        v.ms += s.end - s.start;
      }
      previous = prefixes;
    }
  }
  return [...visits.values()];
}
