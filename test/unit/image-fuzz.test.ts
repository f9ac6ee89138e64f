/**
 * Property-based fuzz of the checks restore runs before it starts any process (issue
 * 12): real images (the codec's rich sample and the planner's sample), mutated in their
 * model fields and in their encoded bytes, must be either refused with a coded PcrError
 * or planned: never another exception. Seeded and bounded (PCR_FUZZ_RUNS, PCR_FUZZ_SEED
 * in test/fixtures/image-mutants.ts); images it found wrong are in test/corpus/.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { encodeImage } from '../../src/image/codec.js';
import { validateImage } from '../../src/image/validate.js';
import { PcrError } from '../../src/errors.js';
import type { Image } from '../../src/model/image.js';
import { sampleImage as codecSample } from '../fixtures/image-sample.js';
import { sampleImage as planSample } from '../fixtures/plan-images.js';
import {
  applyEdit,
  bytesArb,
  cloneImage,
  editsArb,
  encodeMutant,
  FUZZ_LIMITS,
  FUZZ_RUNS,
  FUZZ_SEED,
  judge,
  mutateBytes,
} from '../fixtures/image-mutants.js';

/** The codec's sample, made restorable: no nested pid namespace, every dead status known. */
function codecSampleRestorable(): Image {
  const img = codecSample();
  img.tasks[1]!.nsPids = [200];
  img.targets[3]!.exitStatus = 9;
  return img;
}

const SEEDS: [string, Image][] = [
  ['codec sample', codecSampleRestorable()],
  ['plan sample', planSample()],
];

test('the seed images are valid and planned', () => {
  for (const [name, img] of SEEDS) {
    const v = judge(encodeImage(img, { limits: FUZZ_LIMITS }));
    assert.ok(v.ok, `${name}: ${v.ok ? '' : v.message}`);
  }
});

for (const [name, seed] of SEEDS) {
  test(`fuzz (${name}, model edits): refused with a coded PcrError or planned`, () => {
    const seen = { refused: 0, planned: 0 };
    fc.assert(
      fc.property(editsArb, fc.boolean(), (edits, externalDead) => {
        const img = cloneImage(seed);
        for (const e of edits) applyEdit(img, e);
        // The model check alone: coded, or nothing.
        try {
          validateImage(img, FUZZ_LIMITS);
        } catch (err) {
          if (!(err instanceof PcrError)) throw err;
        }
        const bytes = encodeMutant(img);
        if (!bytes) return;
        const v = judge(bytes, externalDead);
        seen[v.ok ? 'planned' : 'refused']++;
      }),
      { seed: FUZZ_SEED, numRuns: FUZZ_RUNS },
    );
    // The fuzz reached both outcomes (else it tests nothing).
    assert.ok(seen.refused > 0 && seen.planned > 0, JSON.stringify(seen));
  });

  test(`fuzz (${name}, payload bytes): refused with a coded PcrError or planned`, () => {
    const file = encodeImage(seed, { limits: FUZZ_LIMITS });
    let refused = 0;
    fc.assert(
      fc.property(bytesArb, (edits) => {
        if (!judge(mutateBytes(file, edits)).ok) refused++;
      }),
      { seed: FUZZ_SEED, numRuns: FUZZ_RUNS },
    );
    assert.ok(refused > 0);
  });
}
