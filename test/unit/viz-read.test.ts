/** Reading trace files: valid v1 (plain and completed), and every kind of broken input. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PcrError } from '../../src/errors.js';
import { parseTrace, readTraceFile } from '../../src/viz/read.js';
import { cleanTrace, demoV1Text, ndjson } from '../fixtures/viz-traces.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'pcr-viz-read-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const invalid = (fn: () => unknown, pattern: RegExp) =>
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof PcrError);
    assert.equal(err.code, 'PCR_ERR_TRACE_INVALID');
    assert.match(err.message, pattern);
    return true;
  });

test('a completed v1 trace is read whole, every kind kept', () => {
  const events = cleanTrace();
  const r = parseTrace(ndjson(events), 'x');
  assert.equal(r.events.length, events.length);
  assert.deepEqual(r.warnings, []);
  const kinds = new Set(r.events.map((e) => e.kind));
  assert.deepEqual([...kinds].sort(), [
    'fd-transfer',
    'frame-ignored',
    'process',
    'register',
    'state',
  ]);
});

test("a real demo's v1 trace (no kinds, no run) is read", () => {
  const text = demoV1Text();
  const r = parseTrace(text, 'demo');
  assert.equal(r.events.length, text.trim().split('\n').length);
  assert.ok(r.events.every((e) => e.kind === undefined));
  assert.deepEqual(r.warnings, []);
});

test('not NDJSON, wrong version, bad fields: one error naming file and line', () => {
  invalid(
    () => parseTrace('<html>\n', 'f.html'),
    /^trace f\.html: not a trace file .*line 1 is not JSON$/,
  );
  const good = ndjson(cleanTrace().slice(0, 3));
  invalid(() => parseTrace(good + '{oops\n' + good, 'f'), /^trace f: line 4 is not JSON$/);
  invalid(
    () => parseTrace(good.replace('"v":1', '"v":2'), 'f'),
    /line 1: schema version 2, this reader knows v1/,
  );
  invalid(() => parseTrace('[1,2]\n', 'f'), /line 1 is not a JSON object/);
  invalid(
    () => parseTrace(good.replace('"source":"coordinator"', '"source":"nobody"'), 'f'),
    /line 1: "source" must be/,
  );
  invalid(
    () => parseTrace(good.replace(/"time":[0-9.]+/, '"time":"soon"'), 'f'),
    /line 1: no "time"/,
  );
  invalid(() => parseTrace('\n\n', 'f'), /no events/);
});

test('a cut-off last line is a warning; the events before it are kept', () => {
  const events = cleanTrace();
  const text = ndjson(events);
  const cut = text.slice(0, text.length - 20); // the last line loses its end and newline
  const r = parseTrace(cut, 'f');
  assert.equal(r.events.length, events.length - 1);
  assert.match(r.warnings.join('\n'), /last line .* is cut off/);
});

test('unknown kinds and unusable payloads are skipped with a warning; a second run is left out', () => {
  const events = cleanTrace();
  const extra = [
    { ...events[0]!, kind: 'teleport' },
    { ...events[1]!, process: { action: 'fly' } },
    { ...events[2]!, run: 'another-run' },
  ];
  const r = parseTrace(ndjson([...events, ...(extra as never[])]), 'f');
  assert.equal(r.events.length, events.length);
  const w = r.warnings.join('\n');
  assert.match(w, /1 event\(s\) of kinds this reader does not know/);
  assert.match(w, /process\.action is "fly"; event skipped/);
  assert.match(w, /holds 2 runs; only the first \(a1b2c3d4e5f60718\)/);
});

test('a file over the size cap is refused before parsing; missing files and directories are usage errors', (t) => {
  const dir = tempDir(t);
  const big = join(dir, 'big.ndjson');
  writeFileSync(big, ndjson(cleanTrace()));
  invalid(() => readTraceFile(big, 1000), /bytes, more than the 1000 this command reads/);
  assert.equal(readTraceFile(big).events.length, cleanTrace().length);
  assert.throws(
    () => readTraceFile(join(dir, 'missing')),
    (e: unknown) => e instanceof PcrError && e.code === 'PCR_ERR_USAGE' && /ENOENT/.test(e.message),
  );
  mkdirSync(join(dir, 'd'));
  assert.throws(() => readTraceFile(join(dir, 'd')), /is a directory/);
});

test('pidfd-cr trace: broken input is one line and exit 14, never a stack', (t) => {
  const dir = tempDir(t);
  const cases: Array<[string, string, number, RegExp]> = [
    ['garbage.txt', 'hello world\n', 14, /not a trace file/],
    ['v2.ndjson', ndjson(cleanTrace()).replace(/"v":1/g, '"v":2'), 14, /schema version 2/],
    ['empty.ndjson', '', 14, /no events/],
  ];
  for (const [name, text, status, pattern] of cases) {
    const f = join(dir, name);
    writeFileSync(f, text);
    for (const format of ['html', 'chrome', 'text']) {
      const r = cli('trace', f, '--format', format);
      assert.equal(r.status, status, `${name} ${format}: ${r.stderr}`);
      assert.equal(r.stdout, '');
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, pattern);
      assert.doesNotMatch(r.stderr, /\bat .*\.js:\d+/);
    }
  }
  const missing = cli('trace', join(dir, 'nope'));
  assert.equal(missing.status, 2);
  assert.match(missing.stderr, /^pidfd-cr: trace: .*nope: ENOENT/);
  assert.equal(cli('trace').status, 2);
  assert.equal(cli('trace', 'a', 'b').status, 2);
  assert.match(
    cli('trace', join(dir, 'x'), '--format', 'pdf').stderr,
    /--format must be html, chrome or text/,
  );
});

test('pidfd-cr trace: a cut-off trace still renders, the warning on stderr and on the page', (t) => {
  const dir = tempDir(t);
  const f = join(dir, 'cut.ndjson');
  const text = ndjson(cleanTrace());
  writeFileSync(f, text.slice(0, text.length - 200));
  const r = cli('trace', f, '--format', 'html');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /cut off/);
  assert.match(r.stdout, /id="warnings"/);
  assert.match(r.stdout, /the trace ends with the coordinator in tearing-down/);
  assert.match(r.stdout, /data-outcome="incomplete"/);
});
