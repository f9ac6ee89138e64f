/**
 * restoreImage as an embedding tool calls it: what it refuses before starting anything
 * (an image changed in memory, an already-aborted signal), what a caller's hostile
 * values or throwing callbacks do (a PcrError, never a crash), and that nothing is left
 * in the calling process: no process, no pidfd, no abort listener, no run directory.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readlinkSync } from 'node:fs';
import { getEventListeners } from 'node:events';
import { ImageError, PcrError } from '../../src/errors.js';
import { restoreImage } from '../../src/restore/restore-image.js';
import type { TraceEvent } from '../../src/protocol/trace.js';
import { alive } from '../fixtures/scenarios.js';
import { buildAndDump, waitGone } from '../helpers/restore-run.js';
import { descendantsOf } from '../helpers/proc-view.js';

type After = { after(fn: () => unknown): void };

const pidfdsOfUs = (): string[] =>
  readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`) === 'anon_inode:[pidfd]';
    } catch {
      return false;
    }
  });

/** Runs `call`, which must reject with a PcrError; checks nothing is left; returns it. */
async function rejects(t: After, dir: string, call: () => Promise<unknown>): Promise<PcrError> {
  const before = new Set(descendantsOf(process.pid));
  const fds = pidfdsOfUs();
  const err = await call().then(
    () => assert.fail('the restore succeeded'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof PcrError, `a PcrError: ${String(err)}`);
  const left = descendantsOf(process.pid).filter((p) => !before.has(p));
  assert.deepEqual(await waitGone(left), [], 'no process of the restore left');
  assert.deepEqual(pidfdsOfUs(), fds, 'no pidfd left in the caller');
  assert.deepEqual(readdirSync(dir), [], 'no run directory left');
  return err;
}

test('an image changed in memory is validated before anything starts', async (t) => {
  const { image, dir } = await buildAndDump(t, alive);
  const before = new Set(descendantsOf(process.pid));
  const dup = structuredClone(image);
  dup.tasks.push(structuredClone(dup.tasks[1]!)); // the same task twice
  const err = await rejects(t, dir, () => restoreImage(dup, { runDirParent: dir }));
  assert.ok(err instanceof ImageError, err.message);
  assert.match(err.where, /^tasks\[\d+\]\.pid$/);
  const fd = structuredClone(image);
  fd.tasks[0]!.fds[0]!.fd = -3;
  assert.ok(
    (await rejects(t, dir, () => restoreImage(fd, { runDirParent: dir }))) instanceof ImageError,
  );
  const notAnImage = await rejects(t, dir, () =>
    restoreImage(null as never, { runDirParent: dir }),
  );
  assert.equal(notAnImage.message, 'image: null is not an image');
  assert.deepEqual(
    descendantsOf(process.pid).filter((p) => !before.has(p)),
    [],
    'nothing was spawned',
  );
});

test('an already-aborted signal rejects at once without spawning anything', async (t) => {
  const { image, dir } = await buildAndDump(t, alive);
  const c = new AbortController();
  c.abort(Object.create(null)); // a reason String() cannot print
  const traced: TraceEvent[] = [];
  const err = await rejects(t, dir, () =>
    restoreImage(image, { runDirParent: dir, signal: c.signal, trace: (e) => traced.push(e) }),
  );
  assert.equal(err.code, 'PCR_ERR_RESTORE');
  assert.equal(
    err.message,
    'restore not started: its signal was already aborted ([object Object])',
  );
  assert.deepEqual(traced, [], 'no machine ran');
});

test('an abort reason that cannot be printed stops a running restore cleanly', async (t) => {
  const { image, dir } = await buildAndDump(t, alive);
  const c = new AbortController();
  const hostile = {
    toString: () => {
      throw new Error('no');
    },
  };
  const err = await rejects(t, dir, () =>
    restoreImage(image, {
      runDirParent: dir,
      signal: c.signal,
      workerStderr: null,
      trace: (e) => {
        if (e.source !== 'coordinator' && e.to === 'ready' && !c.signal.aborted) c.abort(hostile);
      },
    }),
  );
  assert.match(err.message, /\[object Object\]/);
  assert.deepEqual(getEventListeners(c.signal, 'abort'), [], 'the abort listener is removed');
});

test('callbacks that throw non-errors stop the restore with a PcrError carrying the value', async (t) => {
  const { image, dir } = await buildAndDump(t, alive);
  const bare = Object.create(null) as object;
  const sinkErr = await rejects(t, dir, () =>
    restoreImage(image, {
      runDirParent: dir,
      workerStderr: null,
      trace: () => {
        throw bare;
      },
    }),
  );
  assert.equal(sinkErr.message, 'trace sink failed: [object Object]');
  assert.equal(sinkErr.cause, bare);
  const verifiedErr = await rejects(t, dir, () =>
    restoreImage(image, {
      runDirParent: dir,
      workerStderr: null,
      onVerified: () => {
        throw new Error('caller bug');
      },
    }),
  );
  assert.equal(verifiedErr.message, 'onVerified failed: caller bug');
});

test('many restores on one long-lived signal leave no listener behind', async (t) => {
  const { image, dir } = await buildAndDump(t, alive);
  const c = new AbortController();
  for (let i = 0; i < 3; i++) {
    const r = await restoreImage(image, {
      runDirParent: dir,
      signal: c.signal,
      workerStderr: null,
    });
    assert.equal(r.ok, true);
  }
  assert.deepEqual(getEventListeners(c.signal, 'abort'), []);
  assert.deepEqual(readdirSync(dir), []);
});

test('a run directory parent where nothing can be made is a usage error naming it', async (t) => {
  const { image, dir } = await buildAndDump(t, alive);
  const err = await rejects(t, dir, () => restoreImage(image, { runDirParent: `${dir}/missing` }));
  assert.equal(err.code, 'PCR_ERR_USAGE');
  assert.equal(
    err.message,
    `run directory parent ${dir}/missing: cannot make the run directory there: ENOENT`,
  );
});
