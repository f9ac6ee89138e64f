/**
 * A real impostor process on the control link (test/fixtures/impostor.ts) during a
 * restore: the root worker is stopped by the test hook (`sigstop@<root>:spawn`) before it
 * connects to ZeroMQ and proves itself on the auth socket, so the impostor holds the
 * root's routing id first. Its HELLO is refused and the restore stops naming
 * the task (and the impostor's pid when the kernel showed it); nothing is left behind.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { restoreImage } from '../../src/restore/restore-image.js';
import { PcrError } from '../../src/errors.js';
import { closeQuiet, connectSeqpacket, recvFds } from '../../native/index.js';
import { alive } from '../fixtures/scenarios.js';
import { buildAndDump, waitGone } from '../helpers/restore-run.js';
import { descendantsOf, procState } from '../helpers/proc-view.js';

const IMPOSTOR = fileURLToPath(new URL('../fixtures/impostor.js', import.meta.url));

/** Polls (bounded) until `probe` gives a value. */
async function until<T>(what: string, probe: () => T | undefined): Promise<T> {
  for (let i = 0; i < 1500; i++) {
    const v = probe();
    if (v !== undefined) return v;
    await sleep(10);
  }
  assert.fail(`never happened: ${what}`);
}

/** Starts the impostor; resolves once its HELLO is queued. Killed and reaped after the test. */
async function startImpostor(
  t: { after(fn: () => unknown): void },
  args: string[],
): Promise<ChildProcess> {
  const child = spawn(process.execPath, [IMPOSTOR, ...args], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const exited = once(child, 'exit');
  t.after(async () => {
    child.kill('SIGKILL');
    await exited;
  });
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  await until('the impostor sent its HELLO', () => (out.includes('sent') ? true : undefined));
  return child;
}

async function restoreWithImpostor(
  t: { after(fn: () => unknown): void },
  impostorArgs: (rundir: string, root: number, rootWorker: number) => string[],
): Promise<{ err: PcrError; rootWorker: number; impostor: ChildProcess }> {
  const { image, dir } = await buildAndDump(t, alive);
  const before = new Set(descendantsOf(process.pid));
  const restore = restoreImage(image, {
    runDirParent: dir,
    fault: `sigstop@${image.rootPid}:spawn`,
    workerStderr: null,
    // Without the proof check the forged HELLO would be ASSIGNed and registration hang.
    timeoutMs: 8000,
  }).then(
    () => assert.fail('the restore succeeded'),
    (e: unknown) => e,
  );
  const rootWorker = await until('the root worker stopped itself', () =>
    descendantsOf(process.pid).find((p) => !before.has(p) && procState(p) === 'T'),
  );
  const rundir = join(
    dir,
    readdirSync(dir).find((n) => n.startsWith('pcr-'))!,
  );
  const impostor = await startImpostor(t, impostorArgs(rundir, image.rootPid, rootWorker));
  const err = await restore;
  assert.ok(err instanceof PcrError, `a PcrError: ${String(err)}`);
  // Nothing of the restore is left below us (the impostor is ours, not the restore's).
  const below = descendantsOf(process.pid).filter((p) => !before.has(p) && p !== impostor.pid);
  assert.deepEqual(below, [], 'nothing of the restore below us when restoreImage settles');
  assert.deepEqual(await waitGone([rootWorker]), []);
  assert.deepEqual(readdirSync(dir), [], 'the run directory is gone');
  return { err, rootWorker, impostor };
}

test('a forged HELLO (a worker routing id and pid, no kernel proof) stops the restore', async (t) => {
  let root = 0;
  const { err, rootWorker } = await restoreWithImpostor(t, (rundir, r, worker) => {
    root = r;
    return [rundir, String(r), 'forge', String(worker)];
  });
  assert.equal(err.code, 'PCR_ERR_RESTORE');
  assert.match(
    err.message,
    new RegExp(
      `stopped during phase spawn: task ${root}: refused a forged WORKER_HELLO claiming pid ${rootWorker} `,
    ),
  );
});

test('a process that proves itself but is not the worker is named by its kernel pid', async (t) => {
  let root = 0;
  const { err, rootWorker, impostor } = await restoreWithImpostor(t, (rundir, r) => {
    root = r;
    return [rundir, String(r), 'prove'];
  });
  assert.equal(err.code, 'PCR_ERR_RESTORE');
  assert.match(
    err.message,
    new RegExp(
      `task ${root}: refused a WORKER_HELLO from pid ${impostor.pid}, which is not its worker \\(pid ${rootWorker};`,
    ),
  );
});

test('a connection to the auth socket that stays silent is closed by the coordinator', async (t) => {
  const { image, dir } = await buildAndDump(t, alive);
  const stop = new AbortController();
  let client = -1;
  t.after(() => closeQuiet(client));
  const restoring = restoreImage(image, {
    runDirParent: dir,
    hold: true,
    signal: stop.signal,
    onVerified: () => {
      const rundir = join(dir, readdirSync(dir)[0]!);
      client = connectSeqpacket(join(rundir, 'auth.sock'));
    },
  });
  await until('the restore is verified', () => (client >= 0 ? true : undefined));
  // recvFds: null while the connection is open and quiet, an empty payload once closed.
  const closed = await until('the coordinator closed the silent connection', () =>
    recvFds(client, 16, 0)?.payload.length === 0 ? true : undefined,
  );
  assert.equal(closed, true);
  stop.abort('done');
  assert.equal((await restoring).ok, true);
});
