/**
 * Regression corpus: every image the fuzz or an adversarial pass ever found wrong
 * (test/corpus/*.json: the image file's bytes in base64 and the expected outcome). Each
 * must still be refused by decode + validate + plan with its code (and `where`, for an
 * invalid image) before any process starts. Add a file to add a case.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { judge } from '../fixtures/image-mutants.js';

// dist/test/unit -> the source tree's test/corpus (not copied by the build).
const CORPUS = fileURLToPath(new URL('../../../test/corpus/', import.meta.url));

interface Entry {
  description: string;
  expect: { code: string; where?: string };
  image: string;
}

const files = readdirSync(CORPUS).filter((f) => f.endsWith('.json'));

test('the corpus is there', () => assert.ok(files.length >= 3, files.join(', ')));

for (const name of files) {
  const entry = JSON.parse(readFileSync(CORPUS + name, 'utf8')) as Entry;
  test(`corpus ${name}: ${entry.description}`, () => {
    // judge throws anything that is not a coded PcrError: that fails the test too.
    const v = judge(Buffer.from(entry.image, 'base64'));
    assert.equal(v.ok, false, 'accepted');
    if (v.ok) return;
    assert.equal(v.code, entry.expect.code, v.message);
    // An invalid image names the field at fault first (ImageError: "<where>: ...").
    if (entry.expect.where !== undefined)
      assert.ok(v.message.startsWith(`${entry.expect.where}:`), v.message);
  });
}
