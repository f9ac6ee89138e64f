import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as lib from '../../src/index.js';
import * as testing from '../../src/testing/index.js';

test('the package entry point is the compiled library index', () => {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8'));
  assert.equal(pkg.main, 'dist/src/index.js');
  assert.equal(pkg.types, 'dist/src/index.d.ts');
});

test('the library exports the entry points an embedding tool needs', () => {
  for (const name of [
    'dumpTree',
    'dumpToDir',
    'readImage',
    'writeImage',
    'encodeImage',
    'decodeImage',
    'formatImage',
    'imageToJson',
    'restoreImage',
    'planRestore',
    'compareReports',
    'fileTraceSink',
  ] as const) {
    assert.equal(typeof lib[name], 'function', name);
  }
  assert.equal(lib.FORMAT_VERSION, 1);
  assert.equal(lib.TRACE_VERSION, 1);
});

test('the test harness is its own entry point (pidfd-cr/testing), not part of the library API', () => {
  assert.equal(typeof testing.buildTree, 'function');
  assert.equal(typeof testing.DEMO_TREE, 'object');
  assert.equal('buildTree' in lib, false);
  assert.equal('DEMO_TREE' in lib, false);
});

test('the exported machines carry their named states for visualizers', () => {
  const task = JSON.stringify(lib.taskMachine.toJSON());
  for (const state of ['open-alive', 'become-creator', 'wait-for-fd', 'kill-temp']) {
    assert.ok(task.includes(`"${state}"`), state);
  }
  assert.equal(lib.coordinatorMachine.id.length > 0, true);
});
