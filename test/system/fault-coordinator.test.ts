/**
 * The coordinator is SIGKILLed while a creator holds its temporary processes (the root
 * worker hangs in kill-temp through the test hook): the temporaries are zombies already
 * (x dies at once, its creator reaps it in kill-temp), the workers die by
 * PR_SET_PDEATHSIG; nothing is left (we are the subreaper that adopts and reaps the
 * orphans, the zombie temporaries among them), and the run directory is removed by its guard
 * (docs/restore.md "Nothing left behind").
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { writeImage } from '../../src/image/store.js';
import { deadStatuses } from '../fixtures/scenarios.js';
import { buildAndDump, waitGone } from '../helpers/restore-run.js';
import { descendantsOf, comm, procState } from '../helpers/proc-view.js';
import { CLI } from '../fixtures/dump-helpers.js';
import { TEMP_COMM } from '../../src/sys/temp-process.js';

test('coordinator SIGKILLed during kill-temp: workers and temps die, nothing left', async (t) => {
  const { image, dir } = await buildAndDump(t, deadStatuses);
  writeImage(dir, image);
  const tracePath = join(dir, 'trace.ndjson');
  const child = spawn(process.execPath, [CLI, 'restore', '-D', dir, '--trace-file', tracePath], {
    stdio: 'ignore',
    env: { ...process.env, TMPDIR: dir, PCR_FAULT: `hang@${image.rootPid}:kill-temp` },
  });
  const exited = once(child, 'exit');
  t.after(() => child.kill('SIGKILL'));
  const inKillTemp = (): boolean =>
    existsSync(tracePath) &&
    readFileSync(tracePath, 'utf8').includes(`"source":"task:${image.rootPid}","pid"`) &&
    /"to":"kill-temp"/.test(readFileSync(tracePath, 'utf8'));
  for (let i = 0; i < 3000 && !inKillTemp(); i++) await sleep(10);
  assert.ok(inKillTemp(), 'the root worker reached kill-temp');
  const everyone = descendantsOf(child.pid!);
  const temps = everyone.filter((p) => comm(p) === TEMP_COMM);
  assert.equal(temps.length, 5, 'five temporary processes, not reaped yet');
  for (const p of temps) assert.equal(procState(p), 'Z', `temp ${p} is a zombie`);
  child.kill('SIGKILL');
  await exited;
  assert.deepEqual(await waitGone(everyone), []);
  const rundirs = (): string[] => readdirSync(dir).filter((n) => n.startsWith('pcr-'));
  for (let i = 0; i < 200 && rundirs().length > 0; i++) await sleep(10);
  assert.deepEqual(rundirs(), [], 'the run directory is gone too');
});
