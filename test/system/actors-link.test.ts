/**
 * The control link and the trace: ROUTER/DEALER frames over ipc in a private directory,
 * the HELLO registry (early HELLOs wait, contradicting or repeated ones are refused),
 * trace events from XState inspection, and the NDJSON file sink.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createActor, createMachine } from 'xstate';
import { ControlRouter, ControlDealer } from '../../src/restore/zmq-link.js';
import { Registry } from '../../src/restore/registry.js';
import { makeRundir, removeRundir } from '../../src/restore/rundir.js';
import { traceInspector, type TraceEvent } from '../../src/restore/trace.js';
import { fileTraceSink } from '../../src/restore/trace-sinks.js';

test('router and dealers exchange frames by routing id in a 0700 run directory', async () => {
  const dir = makeRundir();
  try {
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    const got: Array<[string, string]> = [];
    let answered!: () => void;
    const done = new Promise<void>((r) => (answered = r));
    const replies: string[] = [];
    const router = await ControlRouter.bind(dir, {
      onFrame: (id, frame) => {
        got.push([id, frame.toString()]);
        void router.send(id, Buffer.from(`hi ${id}`));
      },
      onError: (err) => assert.fail(err),
    });
    const dealers = ['11', '22'].map(
      (id) =>
        new ControlDealer(dir, id, {
          onFrame: (f) => {
            replies.push(f.toString());
            if (replies.length === 2) answered();
          },
          onError: (err) => assert.fail(err),
        }),
    );
    await Promise.all(dealers.map((d, i) => d.send(Buffer.from(`hello from ${i}`))));
    await done;
    assert.deepEqual(got.sort(), [
      ['11', 'hello from 0'],
      ['22', 'hello from 1'],
    ]);
    assert.deepEqual(replies.sort(), ['hi 11', 'hi 22']);
    await Promise.all(dealers.map((d) => d.close()));
    await router.close();
  } finally {
    removeRundir(dir);
  }
});

test('registry: a HELLO is accepted only with the expected restored pid', () => {
  const r = new Registry();
  const hello = (pid: number, restoredPid: number) => ({
    type: 'WORKER_HELLO' as const,
    pid,
    restoredPid,
  });
  assert.deepEqual(r.expect([{ dumped: 1, restored: 101 }]), []);
  assert.deepEqual(r.hello(hello(1, 101)), [hello(1, 101)]);
  assert.deepEqual(r.hello(hello(1, 101)), [], 'a second HELLO for a task is refused');
  assert.deepEqual(r.hello(hello(2, 202)), [], 'unknown yet: waits');
  assert.deepEqual(r.hello(hello(3, 999)), [], 'unknown yet: waits');
  assert.deepEqual(
    r.expect([
      { dumped: 2, restored: 202 },
      { dumped: 3, restored: 303 },
    ]),
    [hello(2, 202)],
    'the waiting HELLO of 2 is accepted, 3 contradicts its parent',
  );
  assert.deepEqual(r.accepted().sort(), [1, 2]);
  assert.deepEqual(
    r.refused.map((h) => h.pid),
    [1, 3],
  );
  assert.equal(r.restoredOf(3), undefined);
  assert.equal(r.isAccepted(2), true);
  assert.equal(r.isAccepted(3), false, 'nothing else from 3 is listened to');
});

test('trace: one event per state change of the root actor, schema v1', () => {
  const m = createMachine({
    id: 'm',
    initial: 'a',
    states: { a: { on: { GO: 'b', STAY: 'a' } }, b: { initial: 'x', states: { x: {} } } },
  });
  const events: TraceEvent[] = [];
  const actor = createActor(m, { inspect: traceInspector('task:7', (e) => events.push(e), 1234) });
  actor.start();
  actor.send({ type: 'STAY' });
  actor.send({ type: 'GO' });
  actor.stop();
  assert.deepEqual(
    events.map((e) => [e.v, e.source, e.pid, e.from, e.to, e.event]),
    [
      [1, 'task:7', 1234, '(start)', 'a', 'xstate.init'],
      [1, 'task:7', 1234, 'a', 'b.x', 'GO'],
    ],
  );
  assert.ok(events.every((e) => e.time > 1.6e12));
});

test('trace file: one valid JSON object per line, exactly the event', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pcr-trace-'));
  try {
    const path = join(dir, 't.ndjson');
    const sink = fileTraceSink(path);
    const e: TraceEvent = {
      v: 1,
      time: 1.5,
      source: 'coordinator',
      pid: 1,
      from: 'a',
      to: 'b',
      event: 'GO',
      details: { phase: 'dead', fd: [3] },
    };
    sink.sink(e);
    sink.sink({ ...e, to: 'c' });
    sink.close();
    const lines = readFileSync(path, 'utf8').trim().split('\n');
    assert.deepEqual(
      lines.map((l) => JSON.parse(l) as unknown),
      [e, { ...e, to: 'c' }],
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
