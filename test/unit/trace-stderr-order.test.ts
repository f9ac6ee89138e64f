/**
 * `--trace` on stderr (stderrTraceSink): lines come out in time order although workers'
 * events reach the coordinator late, with the added kinds as `*` notes; what is held is
 * printed by flush(), and by a timer when no event comes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { stderrTraceSink } from '../../src/restore/trace-sinks.js';
import { TRACE_VERSION, type TraceEvent } from '../../src/protocol/trace.js';

const T = 1_700_000_000_000;

function ev(time: number, source: string, to: string, extra: Partial<TraceEvent> = {}): TraceEvent {
  return {
    v: TRACE_VERSION,
    time: T + time,
    source,
    pid: 10,
    from: '(start)',
    to,
    event: 'E',
    details: {},
    ...extra,
  };
}

/** "+    12.0 ms" of each line, as numbers. */
const times = (lines: string[]): number[] =>
  lines.map((l) => Number(/^\+\s*(-?[0-9.]+) ms/.exec(l)![1]));

test('events arriving out of order are printed in time order once they are old enough', () => {
  const lines: string[] = [];
  let now = T;
  const sink = stderrTraceSink((l) => lines.push(l), { holdMs: 500, now: () => now });
  now = T + 100;
  sink(ev(100, 'coordinator', 'phases.dead'));
  // A worker's events, arriving after the coordinator's later one.
  sink(ev(40, 'task:7', 'sending'));
  sink(
    ev(60, 'task:7', 'sending', {
      kind: 'fd-transfer',
      transfer: { id: 'ab', side: 'send', sender: 7, receiver: 8, files: [1], fds: [4] },
    }),
  );
  assert.deepEqual(lines, [], 'nothing is printed before it is 500 ms old');
  now = T + 610;
  sink(ev(610, 'coordinator', 'phases.kill-temp'));
  // 40, 60 and 100 are due (<= 110); 610 is held.
  assert.deepEqual(times(lines), [0, 20, 60]);
  assert.match(lines[1]!, /task:7 +\* fds send id=ab sender=7 receiver=8 files=1 fds=4/);
  sink(
    ev(300, 'task:9', 'kill-temp', {
      kind: 'process',
      process: { action: 'exit', role: 'temp', pid: 55, ppid: 50, waitStatus: 1792 },
    }),
  );
  sink.flush();
  assert.deepEqual(times(lines), [0, 20, 60, 260, 570]);
  assert.match(lines[3]!, /\* exit temp pid=55 ppid=50 waitStatus=1792/);
  sink.flush();
  assert.equal(lines.length, 5, 'a second flush prints nothing again');
});

test('an event later than the hold is printed at once, with its own time', () => {
  const lines: string[] = [];
  let now = T + 1000;
  const sink = stderrTraceSink((l) => lines.push(l), { holdMs: 500, now: () => now });
  sink(ev(100, 'coordinator', 'a'));
  sink(ev(400, 'coordinator', 'b'));
  assert.deepEqual(times(lines), [0, 300]);
  sink(ev(200, 'task:3', 'c')); // older than what was printed
  assert.deepEqual(times(lines), [0, 300, 100]);
  now = T + 1001;
  sink.flush();
  assert.equal(lines.length, 3);
});

test('equal times keep their seq order', () => {
  const lines: string[] = [];
  const sink = stderrTraceSink((l) => lines.push(l), { holdMs: 500, now: () => T });
  sink(ev(5, 'coordinator', 'second', { seq: 2 }));
  sink(ev(5, 'coordinator', 'first', { seq: 1 }));
  sink.flush();
  assert.match(lines[0]!, /-> first/);
  assert.match(lines[1]!, /-> second/);
});

test('a timer prints held events when no other event comes', async () => {
  const lines: string[] = [];
  const sink = stderrTraceSink((l) => lines.push(l), { holdMs: 20 });
  sink(ev(performance.timeOrigin + performance.now() - T, 'coordinator', 'holding'));
  assert.deepEqual(lines, []);
  for (let i = 0; i < 200 && lines.length === 0; i++) await sleep(10);
  assert.equal(lines.length, 1, 'printed by the timer, without flush()');
  assert.match(lines[0]!, /-> holding/);
});
