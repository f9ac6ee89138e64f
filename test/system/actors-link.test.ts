/**
 * The control link and the trace: ROUTER/DEALER frames over ipc in a private directory,
 * trace events from XState inspection, and the NDJSON file sink. (The HELLO registry:
 * test/unit/registry.test.ts; the auth socket: test/system/auth-impostor.test.ts.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createActor, createMachine } from 'xstate';
import { ControlRouter } from '../../src/protocol/zmq-link.js';
import { ControlDealer } from '../../src/protocol/zmtp-dealer.js';
import { makeRundir, removeRundir } from '../../src/coordinator/rundir.js';
import { traceInspector, type TraceEvent } from '../../src/protocol/trace.js';
import { fileTraceSink } from '../../src/restore/trace-sinks.js';

test('router and dealers exchange frames by routing id in a 0700 run directory', async () => {
  const dir = makeRundir();
  try {
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    const got: Array<[string, string]> = [];
    let answered!: () => void;
    const done = new Promise<void>((r) => (answered = r));
    const replies: string[] = [];
    const unreachable: string[] = [];
    const router = await ControlRouter.bind(dir, {
      onFrame: (id, frame) => {
        got.push([id, frame.toString()]);
        void router.send(id, Buffer.from(`hi ${id}`));
      },
      onError: (err) => assert.fail(err),
      onUnreachable: (id) => unreachable.push(id),
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
    // A send to a peer that left is reported as unreachable, not as a link error (once
    // the ROUTER has seen the disconnect: until then the frame is dropped with the pipe).
    for (let i = 0; i < 5000 && unreachable.length === 0; i++) {
      await router.send('11', Buffer.from('anyone?'));
      await new Promise((r) => setTimeout(r, 1));
    }
    assert.equal(unreachable[0], '11');
    await router.close();
  } finally {
    removeRundir(dir);
  }
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

/** A trace event for the file sink tests. */
const EVENT: TraceEvent = {
  v: 1,
  time: 1.5,
  source: 'coordinator',
  pid: 1,
  from: 'a',
  to: 'b',
  event: 'GO',
  details: {},
};

test('trace file: one valid JSON object per line, exactly the event', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pcr-trace-'));
  try {
    const path = join(dir, 't.ndjson');
    const sink = fileTraceSink(path);
    const e: TraceEvent = { ...EVENT, details: { phase: 'dead', fd: [3] } };
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

test('trace file: a write that fails (/dev/full) throws a SyscallError naming the file, never hangs', () => {
  const sink = fileTraceSink('/dev/full');
  const e = EVENT;
  const expected = {
    name: 'SyscallError',
    code: 'PCR_ERR_SYSCALL',
    syscall: 'write',
    errnoName: 'ENOSPC',
    message: 'write (trace file /dev/full) failed: ENOSPC (28)',
  };
  assert.throws(() => sink.sink(e), expected);
  assert.throws(() => sink.sink(e), expected, 'and every later event');
  sink.close(); // used to retry the failed write for ever
  assert.equal(sink.error?.errnoName, 'ENOSPC');
});
