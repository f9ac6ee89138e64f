/**
 * The restore page in a real headless Chromium (Debian's /usr/bin/chromium, driven by
 * playwright-core; nothing downloads a browser): made by `pidfd-cr demo --viz` from a real
 * restore, loaded with every network request refused. Skipped only when Chromium is not
 * installed and not in CI (.ci/run installs it).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { machineGraph } from '../../src/viz/graph.js';
import type { VizEvent } from '../../src/viz/events.js';
import { failedTrace, ABORT_MESSAGE, ndjson } from '../fixtures/viz-traces.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const CHROMIUM = '/usr/bin/chromium';
const PAGE_URL = 'http://pidfd-cr.invalid/restore.html';
const skip =
  !existsSync(CHROMIUM) && !process.env.CI
    ? `${CHROMIUM} is not installed (apt-get install chromium; CI installs it and never skips)`
    : false;

interface Loaded {
  page: Page;
  problems: string[];
}

/** Opens `html` as the only thing the page may load; every other request is a problem. */
async function load(browser: Browser, html: string): Promise<Loaded> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const problems: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning')
      problems.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()}`));
  await page.route('**/*', async (route) => {
    const url = route.request().url();
    if (url === PAGE_URL)
      await route.fulfill({ status: 200, contentType: 'text/html; charset=utf-8', body: html });
    else {
      problems.push(`request: ${url}`);
      await route.abort();
    }
  });
  await page.goto(PAGE_URL);
  return { page, problems };
}

async function scrubTo(page: Page, t: number): Promise<string[]> {
  await page.$eval(
    '#scrubber',
    (el, v) => {
      (el as unknown as { value: string }).value = v;
      el.dispatchEvent(new Event('input'));
    },
    String(t),
  );
  return page.$$eval('[data-state-node].current', (els) =>
    els.map((e) => e.getAttribute('data-state-node')!),
  );
}

function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'pcr-viz-browser-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('the page of a real demo restore, in Chromium', { skip, timeout: 240_000 }, async (t) => {
  const dir = tempDir(t);
  const traceFile = join(dir, 'trace.ndjson');
  const pageFile = join(dir, 'demo.html');
  const demo = spawnSync(
    process.execPath,
    [MAIN, 'demo', '--trace-file', traceFile, '--viz', pageFile],
    {
      encoding: 'utf8',
      timeout: 180_000,
    },
  );
  assert.equal(demo.status, 0, demo.stderr);
  assert.match(demo.stderr, /wrote the restore's page to /);
  const events = readFileSync(traceFile, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as VizEvent)
    .sort((a, b) => a.time - b.time);
  const t0 = events[0]!.time;
  const html = readFileSync(pageFile, 'utf8');

  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  t.after(() => browser.close());
  const { page, problems } = await load(browser, html);

  // One node per machine state (and the "any state" node), each once.
  for (const m of ['coordinator', 'task'] as const) {
    const ids = await page.$$eval(`[data-chart="${m}"] [data-state-node]`, (els) =>
      els.map((e) => e.getAttribute('data-state-node')!),
    );
    assert.deepEqual(
      [...ids].sort(),
      machineGraph(m)
        .nodes.map((n) => n.id)
        .sort(),
      m,
    );
  }
  // One lane per task of the trace.
  const tasks = [
    ...new Set(events.filter((e) => e.source.startsWith('task:')).map((e) => e.source)),
  ].sort();
  const lanes = await page.$$eval('[data-lane^="task:"]', (els) =>
    els.map((e) => e.getAttribute('data-lane')!),
  );
  assert.deepEqual(lanes.sort(), tasks);
  // One arrow per fd transfer of the trace: its real fd-transfer events (a send and a
  // receive per SCM_RIGHTS message, one id), not inferred from state details.
  const transfers = events.filter((e) => e.kind === 'fd-transfer');
  const ids = [...new Set(transfers.map((e) => e.transfer!.id))].sort();
  assert.ok(ids.length > 0, 'the demo transfers fds');
  assert.equal(transfers.length, 2 * ids.length, 'a send and a receive per message');
  const arrows = await page.$$eval('[data-transfer-arrow]', (els) =>
    els.map((e) => e.getAttribute('data-transfer-arrow')!),
  );
  assert.deepEqual(arrows.sort(), ids);
  // Solid arrows: both sides are in the trace.
  assert.equal(await page.locator('[data-transfer-arrow] path[stroke-dasharray]').count(), 0);
  // One bar per temporary process and per zombie, from their process events.
  const spawned = (role: string): number =>
    events.filter((e) => e.process?.role === role && e.process.action === 'spawn').length;
  assert.ok(spawned('temp') > 0 && spawned('zombie') > 0, 'the demo has a temp and a zombie');
  for (const role of ['temp', 'zombie'])
    assert.equal(await page.locator(`[data-process="${role}"]`).count(), spawned(role), role);
  const tempTitle = await page.locator('[data-process="temp"] title').first().textContent();
  assert.match(tempTitle!, /temp \d+ ino \d+: .* → .*, wait status \d+/);
  // Visited states are marked: every state a task entered.
  const visited = await page.$$eval('[data-chart="task"] .visited[data-state-node]', (els) =>
    els.map((e) => e.getAttribute('data-state')!),
  );
  for (const e of events)
    if (e.source.startsWith('task:') && (e.kind ?? 'state') === 'state')
      assert.ok(visited.includes(e.to), e.to);

  // The scrubber: the coordinator's highlighted state is the one the trace says, at two moments.
  const coordinatorAt = (ms: number) => {
    const last = events
      .filter((e) => e.source === 'coordinator' && e.time - t0 <= ms && e.from !== e.to)
      .pop()!;
    return `coordinator.${last.to}`;
  };
  const openAlive = events.find((e) => e.source === 'coordinator' && e.to === 'phases')!;
  const early = openAlive.time - t0 + 0.01;
  const late = events[events.length - 1]!.time - t0;
  const atEarly = await scrubTo(page, early);
  assert.ok(
    atEarly.includes(coordinatorAt(early)),
    `${coordinatorAt(early)} in ${atEarly.join(' ')}`,
  );
  const atLate = await scrubTo(page, late);
  assert.ok(atLate.includes(coordinatorAt(late)), `${coordinatorAt(late)} in ${atLate.join(' ')}`);
  assert.notDeepEqual(atEarly.sort(), atLate.sort());
  assert.match((await page.textContent('#now-states'))!, /coordinator: /);

  await scrubTo(page, (early + late) / 2);
  // Kept for a look (one file, overwritten by the next run), unlike the rest of `dir`.
  const shotDir = join(tmpdir(), 'pidfd-cr-viz-screenshots');
  mkdirSync(shotDir, { recursive: true });
  const shot = join(shotDir, 'demo.png');
  await page.screenshot({ path: shot, fullPage: true });
  assert.ok(statSync(shot).size > 10_000);
  assert.deepEqual(readFileSync(shot).subarray(1, 4).toString(), 'PNG');
  t.diagnostic(`screenshot: ${shot}`);
  assert.deepEqual(problems, []);
});

test(
  "a failed restore's page says where and why, in Chromium",
  { skip, timeout: 60_000 },
  async (t) => {
    const dir = tempDir(t);
    const traceFile = join(dir, 'failed.ndjson');
    writeFileSync(traceFile, ndjson(failedTrace()));
    const r = spawnSync(
      process.execPath,
      [MAIN, 'trace', traceFile, '-o', join(dir, 'failed.html')],
      {
        encoding: 'utf8',
      },
    );
    assert.equal(r.status, 0, r.stderr);
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    t.after(() => browser.close());
    const { page, problems } = await load(browser, readFileSync(join(dir, 'failed.html'), 'utf8'));
    assert.equal(await page.getAttribute('[data-outcome]', 'data-outcome'), 'failed');
    const summary = (await page.textContent('#failure'))!;
    assert.ok(summary.includes(ABORT_MESSAGE), summary);
    assert.match(summary, /phase dead/);
    assert.ok(await page.isVisible('#failure'));
    assert.equal(await page.locator('[data-failure="task:100"]').count(), 1);
    // The scrubber starts at the failure: task 100 is in `failed` then.
    const failedNode = await page.getAttribute('[data-state-node="task.failed"]', 'class');
    assert.match(failedNode!, /\bcurrent\b/);
    await page.screenshot({ path: join(dir, 'failed.png') });
    assert.deepEqual(problems, []);
  },
);

test(
  'demo --viz writes the page of a restore that failed (SIGTERM mid-restore)',
  { skip, timeout: 120_000 },
  async (t) => {
    const dir = tempDir(t);
    const pageFile = join(dir, 'stopped.html');
    const child = spawn(process.execPath, [MAIN, 'demo', '--viz', pageFile], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const status = await new Promise<number | null>((resolve) => {
      child.stdout.on('data', (d: Buffer) => {
        stdout += d.toString();
        // The image is printed just before the restore starts: stop it while it registers.
        if (stdout.includes('pidfd-cr image')) setTimeout(() => child.kill('SIGTERM'), 30).unref();
      });
      child.on('exit', (code) => resolve(code));
    });
    assert.equal(status, 143, stderr);
    assert.match(stderr, /interrupted by SIGTERM/);
    assert.match(stderr, /wrote the restore's page to /);
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    t.after(() => browser.close());
    const { page, problems } = await load(browser, readFileSync(pageFile, 'utf8'));
    assert.equal(await page.getAttribute('[data-outcome]', 'data-outcome'), 'failed');
    assert.match((await page.textContent('#failure'))!, /interrupted by SIGTERM/);
    assert.ok(await page.isVisible('#failure'));
    assert.ok((await page.locator('[data-lane="coordinator"]').count()) === 1);
    assert.deepEqual(problems, []);
  },
);
