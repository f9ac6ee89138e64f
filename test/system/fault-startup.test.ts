/**
 * A worker that fails during its own start-up: a typed failure, never a stack. Connected
 * to the run directory, it reports the failure over the auth socket and the restore ends
 * naming the task, phase spawn and the cause (syscall and errno); with no way to report,
 * it prints exactly one line `pidfd-cr worker <dumped pid>: <message>` and exits with 71.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { restoreImage } from '../../src/restore/restore-image.js';
import { PcrError } from '../../src/errors.js';
import { WORKER_SCRIPT, workerEnv } from '../../src/launch/spawn-worker.js';
import { WORKER_ENV } from '../../src/protocol/identity.js';
import { WORKER_STARTUP_FAILED_EXIT } from '../../src/worker/startup/failure.js';
import { alive, tree33 } from '../fixtures/scenarios.js';
import { buildAndDump } from '../helpers/restore-run.js';
import { descendantsOf } from '../helpers/proc-view.js';

/** restoreImage that must fail: its PcrError. */
async function restoreFails(...args: Parameters<typeof restoreImage>): Promise<PcrError> {
  const err = await restoreImage(...args).then(
    () => assert.fail('the restore succeeded'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof PcrError, `a PcrError: ${String(err)}`);
  return err;
}

test('a worker whose fd socket cannot be bound: task, phase spawn and errno named, nothing left', async (t) => {
  const { image, dir } = await buildAndDump(t, tree33);
  // A worker with children (spawned before it fails) below the root: its failure waits
  // for its parent's CHILDREN_SPAWNED to be judged.
  const mid = image.tasks.find((x) => x.ppid === image.rootPid)!.pid;
  const errDir = mkdtempSync(join(tmpdir(), 'pcr-stderr-'));
  t.after(() => rmSync(errDir, { recursive: true, force: true }));
  const stderrFd = openSync(join(errDir, 'workers.err'), 'w');
  t.after(() => closeSync(stderrFd));
  const before = new Set(descendantsOf(process.pid));
  const err = await restoreFails(image, {
    runDirParent: dir,
    fault: `bind-taken@${mid}:spawn`,
    workerStderr: stderrFd,
  });
  assert.equal(err.code, 'PCR_ERR_SYSCALL');
  assert.match(
    err.message,
    new RegExp(
      `^restore aborted in phase spawn: task ${mid} failed in phase spawn: bind/listen \\(\\S+/fd-${mid}\\.sock\\) failed: EADDRINUSE \\(98\\)$`,
    ),
  );
  assert.deepEqual(
    descendantsOf(process.pid).filter((p) => !before.has(p)),
    [],
    'nothing of the restore below us when restoreImage settles',
  );
  assert.deepEqual(readdirSync(dir), [], 'the run directory is gone');
  assert.equal(
    readFileSync(join(errDir, 'workers.err'), 'utf8'),
    '',
    'no worker wrote anything: no stack, the failure went to the coordinator',
  );
});

test('the root worker fails at start-up: reported at once, nothing left', async (t) => {
  const { image, dir } = await buildAndDump(t, alive);
  const before = new Set(descendantsOf(process.pid));
  const err = await restoreFails(image, {
    runDirParent: dir,
    fault: `bind-taken@${image.rootPid}:spawn`,
    workerStderr: null,
  });
  assert.equal(err.code, 'PCR_ERR_SYSCALL');
  assert.match(
    err.message,
    new RegExp(`task ${image.rootPid} failed in phase spawn: bind/listen .* EADDRINUSE \\(98\\)$`),
  );
  assert.deepEqual(
    descendantsOf(process.pid).filter((p) => !before.has(p)),
    [],
  );
  assert.deepEqual(readdirSync(dir), []);
});

/** Runs one worker by hand (we are its spawner) with `identity` as PCR_WORKER. */
function runWorker(identity: string): { status: number | null; stderr: string } {
  const env = workerEnv({ dumpedPid: 4242, rundir: '/', reservedFds: [], stderrFd: 2 });
  env[WORKER_ENV] = identity;
  const r = spawnSync(process.execPath, [WORKER_SCRIPT], {
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { status: r.status, stderr: r.stderr };
}

test('a worker with no run directory to report to: one line on stderr, exit 71', () => {
  const missing = join(tmpdir(), `pcr-missing-${process.pid}`);
  const env = workerEnv({ dumpedPid: 4242, rundir: missing, reservedFds: [], stderrFd: 2 });
  const r = runWorker(env[WORKER_ENV]!);
  assert.equal(r.status, WORKER_STARTUP_FAILED_EXIT);
  assert.equal(
    r.stderr,
    `pidfd-cr worker 4242: bind/listen (${missing}/fd-4242.sock) failed: ENOENT (2)\n`,
  );
});

test('a worker with a malformed PCR_WORKER: one line naming what it could read, exit 71', () => {
  const bad = JSON.stringify({ dumpedPid: 4242, spawnerPid: process.pid });
  const r = runWorker(bad);
  assert.equal(r.status, WORKER_STARTUP_FAILED_EXIT);
  assert.equal(r.stderr, `pidfd-cr worker 4242: PCR_WORKER is malformed: ${bad}\n`);
  const unreadable = runWorker('{not json');
  assert.equal(unreadable.status, WORKER_STARTUP_FAILED_EXIT);
  assert.match(unreadable.stderr, /^pidfd-cr worker \?: [^\n]*JSON[^\n]*\n$/);
});
