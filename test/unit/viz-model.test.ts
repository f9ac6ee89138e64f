/** The timeline model from hand-written completed traces and from a real v1 demo trace. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildTimeline } from '../../src/viz/model.js';
import { parseTrace } from '../../src/viz/read.js';
import { toText } from '../../src/viz/text.js';
import { formatTraceLine, type TraceEvent } from '../../src/protocol/trace.js';
import { ABORT_MESSAGE, cleanTrace, demoV1Text, failedTrace, RUN } from '../fixtures/viz-traces.js';

test('completed trace: lanes, slices, phases, transfers, temps, zombies, visits', () => {
  // Shuffled: the model sorts by time (and seq).
  const events = cleanTrace();
  const tl = buildTimeline([...events].reverse());
  assert.equal(tl.run, RUN);
  assert.equal(tl.completed, true);
  assert.equal(tl.outcome, 'done');
  assert.deepEqual(tl.warnings, []);
  assert.deepEqual(
    tl.lanes.map((l) => [l.id, l.pids]),
    [
      ['coordinator', [5000]],
      ['task:100', [5100]],
      ['task:200', [5200]],
    ],
  );
  assert.deepEqual(
    tl.phases.map((p) => [p.name, p.start, p.end]),
    [
      ['open-alive', 41, 47],
      ['dead', 47, 56],
      ['kill-temp', 56, 60],
      ['finalize', 60, 64],
      ['verify', 64, 70],
    ],
  );
  const t100 = tl.lanes[1]!;
  assert.deepEqual(
    t100.slices.map((s) => s.state),
    [
      'spawning',
      'ready',
      'open-alive',
      'ready',
      'wait-for-fd',
      'ready',
      'finalizing',
      'ready',
      'reporting',
      'holding',
      'tearing-down',
      'done',
    ],
  );
  assert.deepEqual(t100.exit, { time: 76, waitStatus: 0 });
  assert.equal(t100.registered, 21);
  assert.deepEqual(tl.transfers, [
    {
      id: 'm1',
      sender: 200,
      receiver: 100,
      sendTime: 53,
      recvTime: 54,
      files: [1],
      fds: [4],
      phase: 'dead',
    },
  ]);
  assert.deepEqual(tl.processes, [
    {
      lane: 'task:100',
      role: 'zombie',
      pid: 5300,
      label: 'task 300',
      start: 26,
      end: 74,
      waitStatus: 768,
    },
    {
      lane: 'task:200',
      role: 'temp',
      pid: 5400,
      label: 'ino 17954',
      start: 49,
      end: 58.5,
      waitStatus: 1792,
    },
  ]);
  assert.equal(tl.ignoredFrames, 1);
  assert.deepEqual(tl.failures, []);
  const visit = (machine: string, state: string) =>
    tl.visits.find((v) => v.machine === machine && v.state === state);
  // ready: 4 times in task 100 (12 + 3.5 + 6.5 + 3 ms), 5 in task 200 (2.5 + 2 + 2 + 2 + 2.5).
  assert.deepEqual(visit('task', 'ready'), { machine: 'task', state: 'ready', count: 9, ms: 36 });
  // become-creator is entered once although two of its children were visited.
  assert.equal(visit('task', 'become-creator')!.count, 1);
  assert.equal(visit('task', 'become-creator')!.ms, 52 - 48);
  assert.equal(visit('coordinator', 'phases')!.count, 1);
  assert.equal(visit('coordinator', 'phases')!.ms, 70 - 41);
  const ready = tl.transitions.find(
    (t) => t.machine === 'task' && t.from === 'finalizing' && t.to === 'ready',
  );
  assert.equal(ready?.count, 2);
});

test('failed trace: where and why, from details.failure', () => {
  const tl = buildTimeline(failedTrace());
  assert.equal(tl.outcome, 'failed');
  assert.deepEqual(
    tl.failures.map((f) => [f.lane, f.from, f.state, f.phase, f.failure?.code]),
    [
      ['task:100', 'wait-for-fd', 'failed', 'dead', 'PCR_ERR_SYSCALL'],
      ['coordinator', 'phases.dead', 'aborting', 'dead', 'PCR_ERR_RESTORE'],
      ['coordinator', 'aborting', 'failed', 'dead', undefined],
    ],
  );
  assert.equal(tl.failures[1]!.message, ABORT_MESSAGE);
  // The transfer was sent, never received.
  assert.equal(tl.transfers.length, 1);
  assert.equal(tl.transfers[0]!.recvTime, undefined);
  assert.match(tl.warnings.join('\n'), /fd transfer m1: the trace has no receive side/);
  assert.deepEqual(
    tl.phases.map((p) => p.name),
    ['open-alive', 'dead'],
  );
});

test('events about unknown tasks are warned about and not drawn', () => {
  const events = cleanTrace().map((e) =>
    e.transfer ? { ...e, transfer: { ...e.transfer, receiver: 999 } } : e,
  );
  const tl = buildTimeline(events);
  assert.equal(tl.transfers.length, 0);
  assert.match(tl.warnings.join('\n'), /fd transfer m1 names task 999, which has no events/);
});

test('a trace cut off mid-run says so; the last state stays open', () => {
  const tl = buildTimeline(cleanTrace().slice(0, 30));
  assert.notEqual(tl.outcome, 'done');
  assert.match(tl.warnings.join('\n'), /the trace ends with the coordinator in phases\.kill-temp/);
  assert.ok(tl.lanes.some((l) => l.slices[l.slices.length - 1]!.open));
});

test('real demo trace (v1): transfers and temporary processes from the details', () => {
  const { events } = parseTrace(demoV1Text(), 'demo');
  const tl = buildTimeline(events);
  assert.equal(tl.completed, false);
  assert.equal(tl.outcome, 'done');
  const tasks = new Set(events.filter((e) => e.source.startsWith('task:')).map((e) => e.source));
  assert.deepEqual(
    tl.lanes
      .filter((l) => l.machine === 'task')
      .map((l) => l.id)
      .sort(),
    [...tasks].sort(),
  );
  // Each receive (wait-for-fd → …) names its senders: one transfer per (receive, sender).
  const receives = events
    .filter((e) => e.from === 'wait-for-fd')
    .flatMap((e) => e.details.peer ?? []);
  assert.ok(receives.length > 0);
  assert.equal(tl.transfers.length, receives.length);
  for (const t of tl.transfers) {
    assert.ok(t.sendTime !== undefined && t.recvTime !== undefined, t.id);
    assert.ok(t.fds.length > 0);
  }
  const inos = events.flatMap((e) => e.details.ino ?? []);
  assert.deepEqual(
    tl.processes.map((p) => p.label),
    inos.map((i) => `ino ${i}`),
  );
  assert.ok(tl.processes.every((p) => p.end !== undefined && p.end > p.start));
  assert.deepEqual(
    tl.phases.map((p) => p.name),
    ['open-alive', 'dead', 'kill-temp', 'finalize', 'verify'],
  );
});

test('text: the --trace lines, sorted by time', () => {
  const events = cleanTrace();
  const text = toText([...events].reverse());
  const lines = text.trimEnd().split('\n');
  assert.equal(lines.length, events.length);
  assert.equal(lines[0], formatTraceLine(events[0] as TraceEvent, events[0]!.time));
  assert.match(lines[lines.length - 1]!, /^\+ {4}80\.0 ms {2}coordinator .*tearing-down -> done/);
  // details.failure (an object) is left out; details.error stays.
  const failed = toText(failedTrace());
  assert.doesNotMatch(failed, /object Object/);
  assert.match(failed, /error=recvmsg \(fd channel\) failed: ECONNRESET/);
});
