/**
 * docs/trace.md cannot go stale: its kinds are exactly the type's (TRACE_KINDS, and the
 * viewer's KINDS); its sample file (docs/trace-sample.ndjson, a real demo restore) is
 * read by the viewer's reader and timeline without a warning, holds every documented kind,
 * pairs every fd transfer and every temporary process, and every field it holds is
 * documented, as every documented field is in it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { TRACE_KINDS } from '../../src/protocol/trace.js';
import { KINDS } from '../../src/viz/events.js';
import { readTraceFile } from '../../src/viz/read.js';
import { buildTimeline } from '../../src/viz/model.js';

const root = (p: string): string => fileURLToPath(new URL(`../../../${p}`, import.meta.url));
const DOC = readFileSync(root('docs/trace.md'), 'utf8');
const SAMPLE = root('docs/trace-sample.ndjson');
const raw = readFileSync(SAMPLE, 'utf8')
  .trim()
  .split('\n')
  .map((l) => JSON.parse(l) as Record<string, unknown>);

/** The first column (`name`) of the first table after the line starting with `marker`. */
function tableKeys(marker: string): string[] {
  const lines = DOC.split('\n');
  const at = lines.findIndex((l) => l.startsWith(marker));
  assert.ok(at >= 0, `docs/trace.md has "${marker}"`);
  const keys: string[] = [];
  let inTable = false;
  for (const l of lines.slice(at + 1)) {
    if (l.startsWith('|')) {
      inTable = true;
      const m = /^\| `([A-Za-z-]+)` +\|/.exec(l);
      if (m) keys.push(m[1]!);
    } else if (inTable) break;
  }
  assert.ok(keys.length > 0, `a table after "${marker}"`);
  return keys;
}

const sorted = (xs: Iterable<string>): string[] => [...new Set(xs)].sort();
const obj = (v: unknown): Record<string, unknown> =>
  v && typeof v === 'object' ? (v as Record<string, unknown>) : {};

test('the kinds of docs/trace.md are exactly those of the type and of the viewer', () => {
  const documented = tableKeys('## Kinds');
  assert.deepEqual(sorted(documented), sorted(TRACE_KINDS));
  assert.deepEqual(sorted(KINDS), sorted(TRACE_KINDS));
});

test('the sample is read and laid out without a warning and holds every documented kind', () => {
  const { events, warnings } = readTraceFile(SAMPLE);
  assert.deepEqual(warnings, []);
  assert.equal(events.length, raw.length, 'every line is an event');
  const timeline = buildTimeline(events, warnings);
  assert.deepEqual(timeline.warnings, []);
  assert.equal(timeline.outcome, 'done');
  assert.equal(timeline.completed, true);
  assert.deepEqual(sorted(events.map((e) => e.kind ?? 'state')), sorted(tableKeys('## Kinds')));
  // Real events, not inferred ones: one arrow per message id, with both sides.
  const ids = sorted(events.flatMap((e) => (e.transfer ? [e.transfer.id] : [])));
  assert.ok(ids.length > 0);
  assert.deepEqual(sorted(timeline.transfers.map((t) => t.id)), ids);
  for (const t of timeline.transfers) {
    assert.ok(t.sendTime !== undefined && t.recvTime !== undefined, t.id);
    assert.ok(t.sendTime <= t.recvTime, `${t.id}: sent before received`);
  }
  // Every temporary process spawned and reaped, with a wait status.
  const temps = timeline.processes.filter((p) => p.role === 'temp');
  assert.ok(temps.length > 0);
  for (const p of temps) {
    assert.ok(p.pid !== undefined && p.end !== undefined && p.waitStatus !== undefined, p.label);
    assert.equal(
      events.filter((e) => e.process?.role === 'temp' && e.process.pid === p.pid).length,
      2,
    );
  }
});

test('every field of the sample is documented, and every documented field is in it', () => {
  const top = tableKeys('## Fields');
  const details = tableKeys('`details` (every key optional)');
  const process = tableKeys('`process` (a `process` event)');
  const transfer = tableKeys('`transfer` (an `fd-transfer` event');
  const keysOf = (pick: (e: Record<string, unknown>) => unknown): string[] =>
    sorted(raw.flatMap((e) => Object.keys(obj(pick(e)))));
  assert.deepEqual(
    keysOf((e) => e),
    sorted(top),
  );
  assert.deepEqual(
    keysOf((e) => e.process),
    sorted(process),
  );
  assert.deepEqual(
    keysOf((e) => e.transfer),
    sorted(transfer),
  );
  // error and failure: only a failed restore has them (test/unit/viz-read.test.ts).
  assert.deepEqual(
    keysOf((e) => e.details),
    sorted(details.filter((k) => k !== 'error' && k !== 'failure')),
  );
  // register and ignored are described in their row of the Fields table.
  for (const k of [...keysOf((e) => e.register), ...keysOf((e) => e.ignored)])
    assert.match(DOC, new RegExp(`\`${k}\``), k);
});
