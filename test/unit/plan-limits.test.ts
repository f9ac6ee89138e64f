import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PcrError } from '../../src/errors.js';
import { planRestore } from '../../src/plan/planner.js';
import { checkPlanLimits, DEFAULT_LIMITS, planSize } from '../../src/plan/limits.js';
import { sampleImage } from '../fixtures/plan-images.js';

test('plan size: workers, restored zombies and one temp per dead group; every pidfd', () => {
  // 3 workers + zombie 400 + dead inos 2000 and 6000; 5 + 2 + 4 fds.
  assert.deepEqual(planSize(planRestore(sampleImage())), { processes: 6, pidfds: 11 });
  // --external-dead: the external target 5000 gets a temp too.
  const dead = planRestore(sampleImage(), { externalDead: true });
  assert.equal(planSize(dead).processes, 7);
});

test('a plan over a limit is PCR_ERR_LIMIT naming the need and the limit', () => {
  const plan = planRestore(sampleImage());
  checkPlanLimits(plan, { maxProcesses: 6, maxPidfds: 11 });
  checkPlanLimits(plan, DEFAULT_LIMITS);
  const over = (limits: typeof DEFAULT_LIMITS): PcrError => {
    try {
      checkPlanLimits(plan, limits);
    } catch (err) {
      assert.ok(err instanceof PcrError);
      assert.equal(err.code, 'PCR_ERR_LIMIT');
      return err;
    }
    assert.fail('no error');
  };
  assert.equal(
    over({ maxProcesses: 5, maxPidfds: 11 }).message,
    'the image needs 6 processes (workers, zombies, temporary processes), more than the limit of 5 (--max-processes)',
  );
  assert.equal(
    over({ maxProcesses: 6, maxPidfds: 10 }).message,
    'the image holds 11 pidfds, more than the limit of 10',
  );
});
