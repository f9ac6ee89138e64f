/**
 * The CLI as a terminal sees it: Ctrl-C sends SIGINT to the whole foreground process
 * group. `restore` and `demo` run in their own group here (spawned detached) and the
 * test signals that group while they are in the middle of their work: they must stop
 * promptly, say they were interrupted, exit 128 + 2 and leave nothing behind (no process
 * of their group or session, none of the processes they started, no temporary
 * directory). A held tree ends on that signal (exit 0), as documented.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { prctl, PR_SET_CHILD_SUBREAPER } from '../../native/index.js';
import { writeImage } from '../../src/image/store.js';
import { sharedScm } from '../fixtures/scenarios.js';
import { buildAndDump } from '../helpers/restore-run.js';
import { descendantsOf, exists } from '../helpers/proc-view.js';
import { CLI } from '../fixtures/dump-helpers.js';

/** Every process whose process group or session is `id`. */
function inGroupOrSession(id: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const text = readFileSync(`/proc/${name}/stat`, 'utf8');
      const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
      if (Number(f[2]) === id || Number(f[3]) === id) out.push(Number(name));
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

interface Interrupted {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** From the group SIGINT to the exit. */
  ms: number;
  stdout: string;
  stderr: string;
  /** Every process below the CLI (any session) when the signal was sent. */
  seen: number[];
}

/**
 * Runs the CLI in its own process group (detached), waits until `ready` says it is in the
 * middle of its work, sends SIGINT to the whole group, as a terminal's Ctrl-C does, and
 * waits for the exit (SIGKILL after 60 s: a hang fails the test instead of blocking it).
 */
async function interruptWhen(
  args: string[],
  env: NodeJS.ProcessEnv,
  ready: (out: { stdout: string; stderr: string; pid: number }) => boolean,
): Promise<Interrupted> {
  const child = spawn(process.execPath, [CLI, ...args], {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env,
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
    child.on('exit', (code, signal) => resolve([code, signal])),
  );
  let done = false;
  void exited.then(() => (done = true));
  const hang = setTimeout(() => child.kill('SIGKILL'), 60_000);
  try {
    const pid = child.pid!;
    while (!done && !ready({ stdout, stderr, pid })) await sleep(5);
    assert.equal(done, false, `exited before it was interrupted: ${stderr}`);
    const seen = descendantsOf(pid);
    const t0 = performance.now();
    process.kill(-pid, 'SIGINT');
    const [code, signal] = await exited;
    return { code, signal, ms: performance.now() - t0, stdout, stderr, seen };
  } finally {
    clearTimeout(hang);
  }
}

/** Nothing of the interrupted CLI is left: its group, its session, what it started. */
function assertNothingLeft(r: Interrupted, pid: number, before: Set<number>): void {
  assert.deepEqual(inGroupOrSession(pid), [], 'no process of its group or session');
  assert.deepEqual(
    r.seen.filter((p) => exists(p)),
    [],
    'every process it had started is gone',
  );
  // We are a child subreaper: whatever it left orphaned would now be below us.
  assert.deepEqual(
    descendantsOf(process.pid).filter((p) => !before.has(p)),
    [],
    'nothing came back to us',
  );
}

/** A private TMPDIR; we become a subreaper (orphans of the CLI would come to us). */
function setUp(t: { after(fn: () => void): void }): { tmp: string } {
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  const tmp = mkdtempSync(join(tmpdir(), 'pcr-sig-test-'));
  t.after(() => rmSync(tmp, { recursive: true, force: true }));
  return { tmp };
}

/** What is below us already (the dumped tree of a restore test). */
const below = (): Set<number> => new Set(descendantsOf(process.pid));

test('demo: a group SIGINT while it restores stops it at once: 130, nothing left', async (t) => {
  const { tmp } = setUp(t);
  const before = below();
  let pid = 0;
  // The restore's start (registration): after GO the demo's restore is done in ≈ 10 ms, too
  // soon after a task's first transition for a signal sent then to find it running.
  const r = await interruptWhen(['demo', '--trace'], { ...process.env, TMPDIR: tmp }, (o) => {
    pid = o.pid;
    return /coordinator +\(start\) -> registering/.test(o.stderr);
  });
  assert.equal(r.code, 130, r.stderr);
  assert.ok(r.ms < 5000, `exited ${r.ms.toFixed(0)} ms after the SIGINT`);
  assert.match(r.stderr, /^pidfd-cr: .*interrupted by SIGINT.*$/m);
  assert.ok(r.seen.length >= 3, `the demo tree and the workers were running: ${r.seen}`);
  assertNothingLeft(r, pid, before);
  assert.deepEqual(readdirSync(tmp), []);
});

test('demo: a group SIGINT while it builds the demo tree stops it at once: 130, nothing left', async (t) => {
  const { tmp } = setUp(t);
  const before = below();
  let pid = 0;
  // Its first child is the demo tree's root: the build has begun.
  const r = await interruptWhen(['demo'], { ...process.env, TMPDIR: tmp }, (o) => {
    pid = o.pid;
    return descendantsOf(o.pid).length > 0;
  });
  assert.equal(r.code, 130, r.stderr);
  assert.ok(r.ms < 5000, `exited ${r.ms.toFixed(0)} ms after the SIGINT`);
  assert.match(r.stderr, /^pidfd-cr: .*interrupted by SIGINT.*$/m);
  assert.equal(r.stdout, '', 'nothing was dumped');
  assertNothingLeft(r, pid, before);
  assert.deepEqual(readdirSync(tmp), []);
});

test('restore: a group SIGINT in the middle of the restore: 130, tree taken down, nothing left', async (t) => {
  setUp(t);
  const { image, dir } = await buildAndDump(t, sharedScm);
  writeImage(dir, image);
  const before = below();
  const env = { ...process.env, TMPDIR: dir };
  let pid = 0;
  // A worker's first transition: the restore after it can be done in ≈ 10 ms (one GO), so
  // this waits for the root's start, well before its GO can come.
  const r = await interruptWhen(['restore', '-D', dir, '--trace'], env, (o) => {
    pid = o.pid;
    return /task:\d+ +\(start\) -> spawning/.test(o.stderr);
  });
  assert.equal(r.code, 130, r.stderr);
  assert.ok(r.ms < 5000, `exited ${r.ms.toFixed(0)} ms after the SIGINT`);
  assert.match(r.stderr, /^pidfd-cr: restore aborted in phase .*interrupted by SIGINT$/m);
  assert.ok(r.seen.length >= 3, `the workers were running: ${r.seen}`);
  assertNothingLeft(r, pid, before);
  assert.deepEqual(readdirSync(dir), ['pidfd-cr.img'], 'run directory removed');
});

test('restore --hold: a group SIGINT in registration is an interrupt (130); during the hold it ends it (0)', async (t) => {
  setUp(t);
  const { image, dir } = await buildAndDump(t, sharedScm);
  writeImage(dir, image);
  const before = below();
  const env = { ...process.env, TMPDIR: dir };
  const args = ['restore', '-D', dir, '--hold', '--trace'];
  let pid = 0;
  // The coordinator's first state: the root worker is being spawned, nobody registered.
  const early = await interruptWhen(args, env, (o) => {
    pid = o.pid;
    return /coordinator +\(start\) -> registering/.test(o.stderr);
  });
  assert.equal(early.code, 130, early.stderr);
  assert.ok(early.ms < 5000, `exited ${early.ms.toFixed(0)} ms after the SIGINT`);
  assert.match(early.stderr, /interrupted by SIGINT$/m);
  assertNothingLeft(early, pid, before);
  assert.deepEqual(readdirSync(dir), ['pidfd-cr.img']);

  const held = await interruptWhen(args, env, (o) => {
    pid = o.pid;
    return o.stdout.includes('holding the restored tree');
  });
  assert.equal(held.code, 0, held.stderr);
  assert.ok(held.ms < 5000, `exited ${held.ms.toFixed(0)} ms after the SIGINT`);
  assert.match(held.stdout, /verification: OK/);
  assert.ok(held.seen.length >= 3, `the held tree: ${held.seen}`);
  assertNothingLeft(held, pid, before);
  assert.deepEqual(readdirSync(dir), ['pidfd-cr.img']);
});
