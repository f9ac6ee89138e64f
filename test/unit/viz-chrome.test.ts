/** Chrome Trace Event JSON: the format's required fields, one track per task, flows per transfer. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildTimeline } from '../../src/viz/model.js';
import { toChromeTrace, type ChromeEvent } from '../../src/viz/chrome.js';
import { parseTrace } from '../../src/viz/read.js';
import type { VizEvent } from '../../src/viz/events.js';
import { cleanTrace, demoV1Text, failedTrace } from '../fixtures/viz-traces.js';

/** The Trace Event Format's rules for the phases we use (chrome://tracing, Perfetto). */
function checkFormat(json: unknown): ChromeEvent[] {
  // What a loader gets: the JSON text, parsed again.
  const doc = JSON.parse(JSON.stringify(json)) as { traceEvents: unknown };
  assert.ok(Array.isArray(doc.traceEvents));
  const events = doc.traceEvents as ChromeEvent[];
  for (const e of events) {
    assert.equal(typeof e.name, 'string');
    assert.ok(['X', 'i', 's', 'f', 'M'].includes(e.ph), e.ph);
    assert.ok(Number.isFinite(e.ts) && e.ts >= 0, `ts of ${e.name}`);
    assert.ok(Number.isInteger(e.pid) && Number.isInteger(e.tid), `pid/tid of ${e.name}`);
    if (e.ph === 'X') assert.ok(Number.isFinite(e.dur) && e.dur! >= 0, `dur of ${e.name}`);
    if (e.ph === 'i') assert.ok(['g', 'p', 't'].includes(e.s!), `scope of ${e.name}`);
    if (e.ph === 's' || e.ph === 'f') assert.ok(Number.isInteger(e.id), 'flow id');
    if (e.ph === 'f') assert.equal(e.bp, 'e');
    if (e.ph === 'M')
      assert.ok(['process_name', 'thread_name', 'process_sort_index'].includes(e.name));
  }
  // Every flow start has its end, each bound inside an X slice of its own thread.
  const starts = events.filter((e) => e.ph === 's');
  const ends = events.filter((e) => e.ph === 'f');
  assert.deepEqual(starts.map((e) => e.id).sort(), ends.map((e) => e.id).sort());
  for (const f of [...starts, ...ends])
    assert.ok(
      events.some(
        (x) =>
          x.ph === 'X' &&
          x.pid === f.pid &&
          x.tid === f.tid &&
          x.ts <= f.ts &&
          f.ts <= x.ts + x.dur!,
      ),
      `flow ${f.id} is inside a slice`,
    );
  return events;
}

function checkTracks(source: VizEvent[]): ChromeEvent[] {
  const tl = buildTimeline(source);
  const events = checkFormat(toChromeTrace(tl));
  const tasks = [
    ...new Set(source.filter((e) => e.source.startsWith('task:')).map((e) => e.source)),
  ];
  const names = events.filter((e) => e.ph === 'M' && e.name === 'process_name');
  const taskTracks = names.filter((e) => String(e.args?.name).startsWith('task '));
  assert.equal(taskTracks.length, tasks.length, 'one track per task');
  assert.equal(new Set(taskTracks.map((e) => e.pid)).size, tasks.length, 'distinct pids');
  for (const t of tasks)
    assert.ok(
      taskTracks.some((e) => String(e.args?.name).startsWith(`task ${t.slice(5)} `)),
      t,
    );
  // One state slice per state change of each task (final states have dur 0).
  const stateChanges = source.filter((e) => (e.kind ?? 'state') === 'state' && e.from !== e.to);
  assert.equal(events.filter((e) => e.ph === 'X' && e.cat === 'state').length, stateChanges.length);
  assert.equal(events.filter((e) => e.ph === 's').length, tl.transfers.length);
  assert.deepEqual(
    events.filter((e) => e.cat === 'phase').map((e) => e.name),
    tl.phases.map((p) => `phase ${p.name}`),
  );
  return events;
}

test('completed trace: tracks, slices, flows, temps and zombies as their own threads', () => {
  const events = checkTracks(cleanTrace());
  const temp = events.find((e) => e.cat === 'temp')!;
  assert.equal(temp.tid, 5400);
  assert.equal(temp.pid, 5200);
  assert.equal(temp.dur, 9500);
  const zombie = events.find((e) => e.cat === 'zombie')!;
  assert.equal(zombie.pid, 5100);
  assert.ok(events.some((e) => e.name === 'thread_name' && e.tid === 5400));
});

test('failed trace: the failures are markers on their tracks', () => {
  const events = checkTracks(failedTrace());
  const failures = events.filter((e) => e.cat === 'failure');
  assert.deepEqual(
    failures.map((e) => e.pid),
    [5100, 5000, 5000],
  );
  assert.equal(failures[0]!.args?.errno, 'ECONNRESET');
});

test('real demo trace (v1): one track per task, a flow per fd transfer', () => {
  const { events } = parseTrace(demoV1Text(), 'demo');
  const out = checkTracks(events);
  assert.ok(out.some((e) => e.ph === 's'));
});
