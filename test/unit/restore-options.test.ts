/** restoreImage's option checks (pure) and the never-throwing text of any value. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PcrError, ImageError } from '../../src/errors.js';
import { checkRestoreOptions, limitsOf } from '../../src/restore/options.js';
import type { RestoreOptions } from '../../src/restore/restore-image.js';
import { DEFAULT_LIMITS } from '../../src/plan/limits.js';
import { checkImage } from '../../src/image/codec.js';
import { textOf, describe } from '../../src/text.js';
import { sampleImage } from '../fixtures/image-sample.js';

function usage(o: RestoreOptions): string {
  try {
    checkRestoreOptions(o);
  } catch (err) {
    assert.ok(err instanceof PcrError);
    assert.equal(err.code, 'PCR_ERR_USAGE');
    return err.message;
  }
  assert.fail(`accepted ${JSON.stringify(o)}`);
}

test('option values a timer or a limit would silently misread are usage errors', () => {
  for (const timeoutMs of [0, -1, NaN, Infinity, 1.5, 2 ** 31, '5' as unknown as number]) {
    assert.match(
      usage({ timeoutMs }),
      /^restore option timeoutMs: .* is not an integer from 1 to 2147483647$/,
    );
  }
  assert.equal(
    usage({ timeoutMs: NaN }),
    'restore option timeoutMs: NaN is not an integer from 1 to 2147483647',
  );
  assert.match(usage({ teardownGraceMs: NaN }), /^restore option teardownGraceMs: NaN/);
  assert.match(usage({ workerStderr: 1.5 }), /^restore option workerStderr: 1.5/);
  assert.match(usage({ workerStderr: -1 }), /^restore option workerStderr: -1/);
  assert.match(
    usage({ limits: { maxProcesses: NaN } }),
    /^restore option limits.maxProcesses: NaN/,
  );
  assert.match(usage({ limits: { maxPidfds: 0 } }), /^restore option limits.maxPidfds: 0/);
  assert.match(
    usage({ limits: { maxTasks: 3 } as never }),
    /^restore option limits: 'maxTasks' is not a known limit$/,
  );
  assert.match(usage({ runDirParent: '' }), /^restore option runDirParent: '' is not a path$/);
  assert.match(usage({ pidMapPath: '' }), /^restore option pidMapPath: '' is not a path$/);
  assert.equal(usage({ hold: true }), 'restore option hold needs a signal to end the hold');
  checkRestoreOptions({});
  checkRestoreOptions({
    timeoutMs: 1,
    teardownGraceMs: 0,
    workerStderr: null,
    hold: true,
    signal: new AbortController().signal,
  });
});

test('limits: the defaults, each replaced by a given value; an explicit undefined keeps the default', () => {
  assert.deepEqual(limitsOf({}), DEFAULT_LIMITS);
  assert.deepEqual(limitsOf({ limits: { maxProcesses: undefined as never } }), DEFAULT_LIMITS);
  assert.deepEqual(limitsOf({ limits: { maxProcesses: 7 } }), {
    ...DEFAULT_LIMITS,
    maxProcesses: 7,
  });
});

test('textOf never throws, whatever the value', () => {
  const bare = Object.create(null) as object;
  const hostile = {
    toString: () => {
      throw new Error('no');
    },
  };
  assert.equal(textOf(bare), '[object Object]');
  assert.equal(textOf(hostile), '[object Object]');
  assert.equal(textOf(new Error('boom')), 'boom');
  assert.equal(textOf(undefined), 'undefined');
  assert.equal(describe('x'), "'x'");
  assert.equal(describe(3), '3');
});

test('checkImage: an object that is not an image is an ImageError, never a TypeError', () => {
  checkImage(sampleImage());
  const bads: Array<[string, unknown]> = [
    ['null', null],
    ['a number', 3],
    ['a string', 'img'],
    ['an empty object', {}],
    ['no tasks', { ...sampleImage(), tasks: undefined }],
  ];
  for (const [what, bad] of bads) {
    assert.throws(
      () => checkImage(bad),
      (err) => err instanceof ImageError,
      what,
    );
  }
  const dup = sampleImage();
  dup.tasks[0]!.fds.push({ ...dup.tasks[0]!.fds[0]! });
  assert.throws(
    () => checkImage(dup),
    (err) => err instanceof ImageError && /tasks\[0\]\.fds/.test(err.where),
  );
});
