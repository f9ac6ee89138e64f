/**
 * Issue 12, findings 2, 3 and 5, checked on the real CLI from the outside (/proc, the
 * run directory, /proc/net/unix):
 * - stray frames during `--hold` (garbage through a ZeroMQ DEALER, forged messages of a
 *   peer that is no registered worker, raw bytes that are not ZMTP at all on the control
 *   socket) do not end the hold: the held tree is still alive, the trace counts them
 *   (`frame-ignored`), and SIGTERM still ends the hold with status 0;
 * - a worker SIGKILLed during `--hold` is reported as a task lost, with its exit status,
 *   exit 5 (PCR_ERR_TASK_EXITED), not as "aborted in phase verify";
 * - SIGKILL of the CLI in every phase and during the hold leaves no run directory, no
 *   socket and no process;
 * - SIGTERM in every phase ends the command within 0.5 s (asserted with a generous
 *   1.5 s bound on this loaded machine; every figure is printed).
 * The phases are held still with the workers' fault injection (`hang@<root>:<phase>`,
 * src/actors/fault.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { Dealer } from 'zeromq';
import { writeImage } from '../../src/image/store.js';
import { encodeToCoordinator } from '../../src/protocol/wire.js';
import { EXIT_CODES } from '../../src/errors.js';
import { deadStatuses, sharedScm } from '../fixtures/scenarios.js';
import { buildAndDump, waitGone } from '../helpers/restore-run.js';
import { descendantsOf, exists, procState } from '../helpers/proc-view.js';
import { CLI } from '../fixtures/dump-helpers.js';

interface Running {
  child: ChildProcess;
  exited: Promise<[number | null, NodeJS.Signals | null]>;
  out(): string;
  err(): string;
  done(): boolean;
}

/** The CLI with piped output; SIGKILLed after 60 s (a hang fails the test, never blocks it). */
function startCli(args: string[], env: NodeJS.ProcessEnv): Running {
  const child = spawn(process.execPath, [CLI, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env,
  });
  let stdout = '';
  let stderr = '';
  let done = false;
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const hang = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const exited = new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
    child.on('exit', (code, signal) => {
      done = true;
      clearTimeout(hang);
      resolve([code, signal]);
    }),
  );
  return { child, exited, out: () => stdout, err: () => stderr, done: () => done };
}

/** Polls (bounded, ≥ 30 s) until `probe` holds; fails naming `what` otherwise. */
async function until(what: string, probe: () => boolean, r?: Running): Promise<void> {
  for (let i = 0; i < 3000; i++) {
    if (probe()) return;
    if (r?.done()) assert.fail(`exited before: ${what}\n${r.out()}\n${r.err()}`);
    await sleep(10);
  }
  assert.fail(`never happened: ${what}`);
}

const runDirs = (dir: string): string[] => readdirSync(dir).filter((n) => n.startsWith('pcr-'));

/** Bound Unix sockets whose path lies under `dir` (/proc/net/unix, last column). */
const socketsUnder = (dir: string): string[] =>
  readFileSync('/proc/net/unix', 'utf8')
    .split('\n')
    .slice(1)
    .map((l) => l.trim().split(/\s+/)[7] ?? '')
    .filter((p) => p.startsWith(dir + '/'));

const traceEvents = (path: string): Array<Record<string, unknown>> =>
  existsSync(path)
    ? readFileSync(path, 'utf8')
        .split('\n')
        .filter((l) => l.startsWith('{') && l.endsWith('}'))
        .map((l) => JSON.parse(l) as Record<string, unknown>)
    : [];

/** Nothing left of a finished CLI: processes it started, its run directory, sockets. */
async function assertNothingLeft(dir: string, seen: readonly number[]): Promise<void> {
  assert.deepEqual(await waitGone(seen), [], 'every process it had started is gone');
  // The guard removes the run directory after a SIGKILL: give it a moment.
  for (let i = 0; i < 300 && runDirs(dir).length > 0; i++) await sleep(10);
  assert.deepEqual(runDirs(dir), [], 'no run directory');
  assert.deepEqual(socketsUnder(dir), [], 'no socket bound under the directory');
}

/** `dumped -> restored` pairs of the printed pid map. */
const pidMapOf = (stdout: string): Map<number, number> =>
  new Map([...stdout.matchAll(/^\s+(\d+) -> (\d+)\s/gm)].map((m) => [Number(m[1]), Number(m[2])]));

test('stray frames during --hold are ignored and counted; the held tree lives; SIGTERM ends it (0)', async (t) => {
  const { image, dir } = await buildAndDump(t, sharedScm);
  writeImage(dir, image);
  const tracePath = join(dir, 'trace.ndjson');
  const r = startCli(['restore', '-D', dir, '--hold', '--trace-file', tracePath], {
    ...process.env,
    TMPDIR: dir,
  });
  t.after(() => r.child.kill('SIGKILL'));
  await until('holding', () => r.out().includes('holding the restored tree'), r);
  const restored = [...pidMapOf(r.out()).values()];
  assert.equal(restored.length, image.tasks.length, r.out());
  const seen = descendantsOf(r.child.pid!);
  for (const p of restored) assert.ok(seen.includes(p), `restored ${p} is below the CLI`);
  const ctl = join(dir, runDirs(dir)[0]!, 'ctl');

  // 1. Raw bytes that are no ZMTP greeting, on the control socket itself.
  const raw = createConnection(ctl);
  await once(raw, 'connect');
  raw.write(Buffer.from('GET / HTTP/1.0\r\n\r\n\x00\xff\xfe garbage'));
  await sleep(200);
  raw.destroy(); // libzmq keeps waiting for a greeting: we hang up

  // 2. A real ZeroMQ peer that is no worker: garbage, and forged messages.
  const root = image.rootPid;
  const other = image.tasks.find((x) => x.pid !== root)!.pid;
  const frames: Array<[string | undefined, Uint8Array]> = [
    [undefined, Buffer.from([0xde, 0xad, 0xbe, 0xef, 0x00, 0x01])],
    ['intruder', Buffer.from('not a protobuf at all')],
    // About a real task, from a peer with another routing id.
    // (Each peer its own routing id: the ROUTER refuses a second peer with a taken one.)
    ['forger', encodeToCoordinator({ type: 'STEP', pid: root, phase: 'verify' })],
    // A routing id that is a pid, but of no registered worker.
    ['4194303', encodeToCoordinator({ type: 'STEP', pid: 4194303, phase: 'verify' })],
    // A HELLO after registration.
    [
      String(999_999),
      encodeToCoordinator({
        type: 'WORKER_HELLO',
        pid: 999_999,
        restoredPid: process.pid,
        nonce: Buffer.alloc(16, 7),
      }),
    ],
    [String(other + 1_000_000), Buffer.alloc(0)],
  ];
  for (const [id, frame] of frames) {
    const dealer = new Dealer({ linger: 1000, ...(id === undefined ? {} : { routingId: id }) });
    dealer.connect(`ipc://${ctl}`);
    await dealer.send(frame);
    dealer.close(); // linger: the frame still leaves
  }
  const ignored = (): number =>
    traceEvents(tracePath).filter((e) => e.kind === 'frame-ignored').length;
  await until(
    `${frames.length} frames ignored in the trace (${ignored()} so far)`,
    () => ignored() >= frames.length,
    r,
  ).catch((e: Error) => {
    const seenNow = traceEvents(tracePath).filter((e) => e.kind === 'frame-ignored');
    throw new Error(`${e.message}: ${JSON.stringify(seenNow.map((x) => x.ignored))}`);
  });
  await sleep(300); // time for a wrong reaction to end the hold
  assert.equal(r.done(), false, `the hold ended: ${r.err()}`);
  for (const p of restored) assert.ok(exists(p) && procState(p) !== 'Z', `restored ${p} alive`);
  const reasons = traceEvents(tracePath)
    .filter((e) => e.kind === 'frame-ignored')
    .map((e) => JSON.stringify(e.ignored));
  t.diagnostic(`ignored: ${reasons.join(' | ')}`);
  assert.ok(
    reasons.some((x) => x.includes('undecodable')),
    reasons.join('\n'),
  );
  assert.ok(
    reasons.some((x) => x.includes(`about task ${root}`)),
    reasons.join('\n'),
  );
  assert.ok(
    reasons.some((x) => x.includes('after registration')),
    reasons.join('\n'),
  );

  r.child.kill('SIGTERM');
  const [code] = await r.exited;
  assert.equal(code, 0, r.err());
  assert.equal(r.err(), '');
  await assertNothingLeft(dir, seen);
});

test('a worker SIGKILLed during --hold: the task is reported lost with its status, exit 5', async (t) => {
  const { image, dir } = await buildAndDump(t, sharedScm);
  writeImage(dir, image);
  const r = startCli(['restore', '-D', dir, '--hold'], { ...process.env, TMPDIR: dir });
  t.after(() => r.child.kill('SIGKILL'));
  await until('holding', () => r.out().includes('holding the restored tree'), r);
  const seen = descendantsOf(r.child.pid!);
  const victim = image.tasks.find((x) => x.pid !== image.rootPid && x.ppid === image.rootPid)!;
  const victimPid = pidMapOf(r.out()).get(victim.pid)!;
  assert.ok(seen.includes(victimPid), `${victimPid} is a held worker`);
  process.kill(victimPid, 'SIGKILL');
  const [code] = await r.exited;
  assert.equal(code, EXIT_CODES.PCR_ERR_TASK_EXITED, r.err());
  assert.equal(code, 5);
  assert.match(r.out(), /verification: OK/);
  assert.match(
    r.err(),
    new RegExp(
      `^pidfd-cr: .*the held tree was taken down: task ${victim.pid} \\(pid ${victimPid}\\) exited \\(killed by signal 9\\)`,
      'm',
    ),
  );
  assert.doesNotMatch(r.err(), /aborted in phase verify/);
  assert.equal(r.err().split('\n').filter(Boolean).length, 1, r.err());
  await assertNothingLeft(dir, seen);
});

/** Where the CLI is held still: a hung root worker in a phase, or the hold itself. */
const STOPS = ['spawn', 'open-alive', 'dead', 'kill-temp', 'finalize', 'verify', 'hold'] as const;
type Stop = (typeof STOPS)[number];

/** The root's state (deadStatuses: it creates every dead group) at each hung step. */
const ROOT_STATE: Record<Exclude<Stop, 'spawn' | 'hold'>, string> = {
  'open-alive': 'open-alive',
  dead: 'become-creator.opening',
  'kill-temp': 'kill-temp',
  finalize: 'finalizing',
  verify: 'reporting',
};

/** Starts a restore held at `stop` and resolves once it is there. */
async function restoreHeldAt(
  image: { rootPid: number },
  dir: string,
  stop: Stop,
  tracePath: string,
  logPath?: string,
): Promise<Running> {
  const env: NodeJS.ProcessEnv = { ...process.env, TMPDIR: dir };
  const args = ['restore', '-D', dir, '--trace-file', tracePath];
  if (logPath !== undefined) args.push('--log-file', logPath);
  if (stop === 'hold') args.push('--hold');
  else env.PCR_FAULT = `hang@${image.rootPid}:${stop}`;
  const r = startCli(args, env);
  // After GO each task runs its own steps: the hung root's own state says where it is.
  const rootIn = (state: string) => (): boolean =>
    traceEvents(tracePath).some((e) => e.source === `task:${image.rootPid}` && e.to === state);
  if (stop === 'hold') await until('holding', () => r.out().includes('holding the restored'), r);
  else if (stop === 'spawn')
    await until(
      'the root worker registered',
      () => traceEvents(tracePath).some((e) => e.kind === 'register'),
      r,
    );
  else await until(`phase ${stop}`, rootIn(ROOT_STATE[stop]), r);
  await sleep(100); // the root worker is in its hang now
  return r;
}

test('SIGKILL of the CLI in every phase and during --hold leaves nothing', async (t) => {
  const { image, dir } = await buildAndDump(t, deadStatuses);
  writeImage(dir, image);
  for (const stop of STOPS) {
    const tracePath = join(dir, `kill-${stop}.ndjson`);
    const r = await restoreHeldAt(image, dir, stop, tracePath);
    const seen = descendantsOf(r.child.pid!);
    assert.ok(seen.length >= 2, `${stop}: workers and guard were running: ${seen}`);
    assert.equal(runDirs(dir).length, 1, `${stop}: a run directory while it runs`);
    r.child.kill('SIGKILL');
    const [, signal] = await r.exited;
    assert.equal(signal, 'SIGKILL');
    await assertNothingLeft(dir, seen);
    t.diagnostic(`${stop}: SIGKILL left nothing (${seen.length} processes were running)`);
  }
});

test('SIGTERM in every phase ends the restore within 0.5 s (bound 1.5 s), nothing left', async (t) => {
  const { image, dir } = await buildAndDump(t, deadStatuses);
  writeImage(dir, image);
  const figures: string[] = [];
  for (const stop of STOPS) {
    const tracePath = join(dir, `term-${stop}.ndjson`);
    const logPath = join(dir, `term-${stop}.log`);
    const r = await restoreHeldAt(image, dir, stop, tracePath, logPath);
    const seen = descendantsOf(r.child.pid!);
    const t0 = performance.now();
    r.child.kill('SIGTERM');
    const [code] = await r.exited;
    const ms = performance.now() - t0;
    figures.push(`${stop} ${ms.toFixed(0)} ms`);
    if (stop === 'hold') {
      assert.equal(code, 0, r.err());
    } else {
      assert.equal(code, 143, `${stop}: ${r.err()}`);
      const phase = stop === 'spawn' ? 'spawn' : stop;
      assert.match(
        r.err(),
        new RegExp(`^pidfd-cr: restore aborted in phase ${phase}: .*interrupted by SIGTERM$`, 'm'),
      );
    }
    assert.ok(ms < 1500, `${stop}: exited ${ms.toFixed(0)} ms after SIGTERM`);
    // The log (synchronous) has every step up to the end, although the command exited.
    const msgs = readFileSync(logPath, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => (JSON.parse(l) as { msg: string }).msg);
    if (stop === 'hold') {
      assert.ok(msgs.includes('hold: done') && msgs.includes('teardown: done'), msgs.join('\n'));
      assert.equal(msgs.at(-1), 'restore done', msgs.join('\n'));
    } else {
      const phase = stop === 'spawn' ? 'spawn' : `phase ${stop}`;
      assert.ok(msgs.includes(`${phase}: start`), msgs.join('\n'));
      assert.ok(
        msgs.some((m) => m.startsWith('abort: ') && m.endsWith('interrupted by SIGTERM')),
        msgs.join('\n'),
      );
      assert.equal(msgs.at(-1), 'restore failed', msgs.join('\n'));
    }
    await assertNothingLeft(dir, seen);
  }
  // The figures (the goal is 0.5 s; the bound leaves room for a loaded machine).
  console.log(`abort latency after SIGTERM: ${figures.join(', ')}`);
  t.diagnostic(`abort latency after SIGTERM: ${figures.join(', ')}`);
});
