import { test } from 'node:test';
import assert from 'node:assert/strict';
import { planRestore } from '../../src/plan/planner.js';
import { fakeRestore } from '../fixtures/fake-restore.js';
import { sampleImage } from '../fixtures/plan-images.js';

test('both machines restore the sample tree over stub effects, and verification agrees', async () => {
  const image = sampleImage();
  const run = await fakeRestore(image, planRestore(image));
  assert.equal(run.output.failure, undefined);
  assert.deepEqual(run.output.differences, []);
  assert.equal(run.output.ok, true);
  // The fake fd tables hold exactly the image's fd numbers.
  for (const t of image.tasks.filter((x) => x.state !== 'zombie')) {
    assert.deepEqual(
      [...run.tables.get(t.pid)!.keys()].sort((a, b) => a - b),
      t.fds.map((e) => e.fd).sort((a, b) => a - b),
      `fd table of task ${t.pid}`,
    );
  }
  assert.deepEqual([...run.taskStates.values()], ['done', 'done', 'done']);
  assert.equal(run.messages.filter((m) => m.type === 'FD_REPORT').length, 3);
});

test('with externalDead the external target comes back dead by SIGKILL and still verifies', async () => {
  const image = sampleImage();
  const run = await fakeRestore(image, planRestore(image, { externalDead: true }));
  assert.deepEqual(run.output.differences, []);
  assert.equal(run.output.ok, true);
});

test('helper fds left open after finalize show up as differences', async () => {
  const image = sampleImage();
  const run = await fakeRestore(image, planRestore(image), { keepHelpers: true });
  assert.equal(run.output.ok, false);
  assert.equal(run.output.failure, undefined);
  const extra = run.output.differences.filter((d) => d.kind === 'extra-fd');
  assert.equal(extra.length, 1);
  assert.match(
    extra[0]!.message,
    /^task 200 fd 1000: pidfd to a dead process \(exit 3\) is not in the image/,
  );
});

test('a failing effect in one worker aborts the restore and tears every worker down', async () => {
  const image = sampleImage();
  const run = await fakeRestore(image, planRestore(image), { openFailsIn: 300 });
  assert.equal(run.output.ok, false);
  assert.deepEqual(run.output.failure, {
    code: 'PCR_ERR_INTERNAL',
    phase: 'open-alive',
    pid: 300,
    message: 'task 300 failed in phase open-alive: injected open failure in 300',
  });
  assert.deepEqual([...run.taskStates.values()], ['done', 'done', 'done']);
});
