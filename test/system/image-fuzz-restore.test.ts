/**
 * The fuzz's accepted mutants, restored for real (issue 12): real dumps are mutated
 * (test/fixtures/image-mutants.ts, seeded), and the first few that decode + validate +
 * plan accept go through restoreImage. Each must restore and verify, or fail with a coded
 * PcrError; either way nothing is left: no process, no run directory.
 * PCR_FUZZ_RESTORES raises the number restored per image (default 3).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import fc from 'fast-check';
import { PcrError } from '../../src/errors.js';
import { encodeImage } from '../../src/image/codec.js';
import { restoreImage } from '../../src/restore/restore-image.js';
import { deadStatuses, sharedScm } from '../fixtures/scenarios.js';
import {
  applyEdit,
  cloneImage,
  editsArb,
  encodeMutant,
  FUZZ_LIMITS,
  FUZZ_SEED,
  judge,
} from '../fixtures/image-mutants.js';
import { buildAndDump, waitGone } from '../helpers/restore-run.js';
import { descendantsOf } from '../helpers/proc-view.js';

const RESTORES = Number(process.env.PCR_FUZZ_RESTORES ?? 3);

for (const [name, spec] of [
  ['sharedScm', sharedScm],
  ['deadStatuses', deadStatuses],
] as const) {
  test(`accepted mutants of a real ${name} dump restore or fail coded, leaving nothing`, async (t) => {
    const { image, dir } = await buildAndDump(t, spec);
    const original = encodeImage(image, { limits: FUZZ_LIMITS });
    const accepted = [];
    for (const edits of fc.sample(editsArb, { seed: FUZZ_SEED, numRuns: 2000 })) {
      const img = cloneImage(image);
      for (const e of edits) applyEdit(img, e);
      const bytes = encodeMutant(img);
      if (!bytes || bytes.equals(original)) continue;
      const v = judge(bytes);
      if (v.ok) accepted.push({ edits, image: v.image });
      if (accepted.length >= RESTORES) break;
    }
    assert.ok(accepted.length > 0, 'the fuzz found mutants the checks accept');
    const before = new Set(descendantsOf(process.pid));
    for (const m of accepted) {
      const what = `edits ${JSON.stringify(m.edits)}`;
      try {
        const r = await restoreImage(m.image, { runDirParent: dir, timeoutMs: 20_000 });
        assert.ok(r.ok, `${what}: restored with differences ${JSON.stringify(r.differences)}`);
      } catch (err) {
        assert.ok(err instanceof PcrError, `${what}: ${(err as Error)?.stack ?? String(err)}`);
        // The checks accepted it: only the restore itself may refuse it, not the image.
        assert.notEqual(err.code, 'PCR_ERR_IMAGE_INVALID', `${what}: ${err.message}`);
      }
      const left = descendantsOf(process.pid).filter((p) => !before.has(p));
      assert.deepEqual(await waitGone(left, 5000), [], `${what}: no process left`);
      assert.deepEqual(readdirSync(dir), [], `${what}: no run directory left`);
    }
  });
}
