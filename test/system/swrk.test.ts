/**
 * `pidfd-cr swrk FD` driven as a host would: version and check, a dump then a held
 * restore with acknowledged notifications (each moment checked from /proc), teardown;
 * and the faults: malformed requests get error responses (never a crash), a host that
 * never answers gets the timeout, one that aborts gets its reason, one that disconnects
 * mid-restore gets the tree taken down and the service ended. Nothing is left.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readlinkSync } from 'node:fs';
import { alive } from '../fixtures/scenarios.js';
import { buildAndDump, waitGone } from '../helpers/restore-run.js';
import { exists } from '../helpers/proc-view.js';
import { writeImage } from '../../src/image/store.js';
import { pb, SwrkHost, type Response } from '../helpers/swrk-host.js';
import { CLI, cli } from '../fixtures/dump-helpers.js';
import { buildTree } from '../../src/testing/index.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const T = pb.ReqType;

const pidfdCount = (pid: number): number =>
  readdirSync(`/proc/${pid}/fd`).filter((fd) => {
    try {
      return readlinkSync(`/proc/${pid}/fd/${fd}`) === 'anon_inode:[pidfd]';
    } catch {
      return false;
    }
  }).length;

function host(t: { after(fn: () => unknown): void }): SwrkHost {
  const h = new SwrkHost();
  t.after(() => h.kill());
  return h;
}

/** The service exits 0 once the host closed its end. */
async function endsClean(h: SwrkHost): Promise<void> {
  h.close();
  const [code] = await h.exited;
  assert.equal(code, 0, h.stderr);
}

function expectError(r: Response, type: number, code: string, message: RegExp): void {
  assert.equal(r.type, type);
  assert.equal(r.success, false);
  assert.equal(r.error?.code, code);
  assert.match(r.error?.message ?? '', message);
}

test('swrk: version, check, and malformed requests get error responses, never a crash', async (t) => {
  const h = host(t);
  const v = await h.ask({ type: T.VERSION });
  const cliVersion = cli(['--version']).stdout.trim();
  assert.deepEqual([v.type, v.success, v.version], [T.VERSION, true, cliVersion]);
  const c = await h.ask({ type: T.CHECK });
  assert.equal(c.success, true);
  assert.equal(c.check?.ok, true, c.check?.features.join('; '));
  // The same judgement as `pidfd-cr check --json`, run here by the CLI.
  const report = JSON.parse(c.check!.reportJson) as { features: { command: string; id: string }[] };
  const cliReport = JSON.parse(cli(['check', '--json']).stdout) as typeof report;
  const ids = (r: typeof report) => r.features.map((f) => `${f.command} ${f.id}`);
  assert.deepEqual(ids(report), ids(cliReport));
  assert.ok(c.check!.features.includes('restore alive: yes'), c.check!.features.join('; '));
  assert.equal(c.check!.features.length, cliReport.features.length);
  h.sendRaw(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff]));
  expectError(await h.next(), T.REQ_UNSET, 'PCR_ERR_USAGE', /^malformed request: /);
  h.sendRaw(Buffer.from([0x08, 0x63])); // type 99
  expectError(await h.next(), T.REQ_UNSET, 'PCR_ERR_USAGE', /unknown type 99/);
  expectError(
    await h.ask({ type: T.NOTIFY, notifySuccess: true }),
    T.NOTIFY,
    'PCR_ERR_USAGE',
    /no notification is waiting/,
  );
  expectError(await h.ask({ type: T.TEARDOWN }), T.TEARDOWN, 'PCR_ERR_USAGE', /no held tree/);
  expectError(
    await h.ask({ type: T.RESTORE }),
    T.RESTORE,
    'PCR_ERR_USAGE',
    /needs restore\.images_dir/,
  );
  expectError(
    await h.ask({ type: T.DUMP, dump: { pid: 1 } }),
    T.DUMP,
    'PCR_ERR_USAGE',
    /needs dump\.pid and dump\.images_dir/,
  );
  const missing = await h.ask({ type: T.RESTORE, restore: { imagesDir: '/nonexistent-pcr' } });
  assert.equal(missing.success, false);
  assert.equal(missing.error?.code, 'PCR_ERR_IMAGE_DIR');
  assert.equal(missing.error?.exitStatus, 6);
  // Longer than a request may be: the error carries the system call and errno.
  h.sendRaw(Buffer.alloc(70_000, 0x08));
  const big = await h.next();
  expectError(big, T.REQ_UNSET, 'PCR_ERR_SYSCALL', /MSG_TRUNC/);
  assert.deepEqual(
    [big.error?.syscall, big.error?.errnum, big.error?.errnoName],
    ['recvmsg', 90, 'EMSGSIZE'],
  );
  assert.equal(big.error?.exitStatus, 12);
  const v2 = await h.ask({ type: T.VERSION });
  assert.equal(v2.success, true, 'still serving');
  await endsClean(h);
});

test('swrk: dump, then a held restore with acknowledged notifications, then teardown', async (t) => {
  const tree = await buildTree(alive);
  t.after(() => tree.destroy());
  const dir = mkdtempSync(join(tmpdir(), 'pcr-swrk-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const h = host(t);
  const d = await h.ask({ type: T.DUMP, dump: { pid: tree.rootPid, imagesDir: dir } });
  assert.equal(d.success, true, d.error?.message);
  assert.ok(d.dump!.tasks >= 2 && d.dump!.pidfds >= 1);
  h.send({ type: T.RESTORE, restore: { imagesDir: dir, hold: true, notify: true } });
  const seen: string[] = [];
  let root = 0;
  for (const [script, hook] of [
    ['post-setup-namespaces', 'treeBuilt'],
    ['post-restore', 'verified'],
    ['pre-resume', 'beforeHandoff'],
  ]) {
    const n = await h.next();
    assert.equal(n.type, T.NOTIFY, n.error?.message);
    assert.equal(n.notify?.script, script);
    assert.equal(n.notify?.hook, hook);
    root = n.notify!.rootPid;
    assert.ok(exists(root));
    assert.equal(n.notify!.pids.length, d.dump!.tasks);
    seen.push(`${hook}:${pidfdCount(root)}`);
    h.send({ type: T.NOTIFY, notifySuccess: true });
  }
  const r = await h.next();
  assert.equal(r.type, T.RESTORE);
  assert.equal(r.success, true, r.error?.message);
  assert.equal(r.restore?.ok, true);
  assert.equal(r.restore?.held, true);
  const pids = r.restore!.pids.map((p) => p.restored);
  assert.ok(pids.includes(root));
  assert.ok(pids.every(exists), 'the tree is held');
  const rootFds = pidfdCount(root);
  assert.ok(rootFds > 0);
  assert.deepEqual(seen, ['treeBuilt:0', `verified:${rootFds}`, `beforeHandoff:${rootFds}`]);
  h.send({ type: T.TEARDOWN });
  const n = await h.next();
  assert.equal(n.notify?.hook, 'beforeTeardown');
  assert.ok(pids.every(exists), 'still there while beforeTeardown waits');
  h.send({ type: T.NOTIFY, notifySuccess: true });
  const done = await h.next();
  assert.deepEqual([done.type, done.success], [T.TEARDOWN, true]);
  assert.deepEqual(await waitGone(pids), []);
  await endsClean(h);
});

test('swrk: a host that never answers gets the timeout; one that aborts gets its reason', async (t) => {
  const { image, dir } = await buildAndDump(t, alive);
  writeImage(dir, image);
  const h = host(t);
  h.send({ type: T.RESTORE, restore: { imagesDir: dir, notify: true, timeoutMs: 1500 } });
  const n = await h.next();
  assert.equal(n.notify?.hook, 'treeBuilt');
  const pids = n.notify!.pids.map((p) => p.restored);
  const r = await h.next(); // no answer
  expectError(r, T.RESTORE, 'PCR_ERR_TIMEOUT', /hook treeBuilt did not finish within 1500 ms$/);
  assert.equal(r.error?.exitStatus, 11);
  assert.deepEqual(await waitGone(pids), []);
  // A late answer finds nothing waiting.
  expectError(
    await h.ask({ type: T.NOTIFY, notifySuccess: true }),
    T.NOTIFY,
    'PCR_ERR_USAGE',
    /no notification/,
  );
  h.send({ type: T.RESTORE, restore: { imagesDir: dir, notify: true } });
  assert.equal((await h.next()).notify?.hook, 'treeBuilt');
  h.send({ type: T.NOTIFY, notifySuccess: true });
  const v = await h.next();
  assert.equal(v.notify?.hook, 'verified');
  assert.equal(v.notify?.differences.length, 0);
  h.send({ type: T.NOTIFY, notifyAbort: 'memory restore failed' });
  const a = await h.next();
  expectError(
    a,
    T.RESTORE,
    'PCR_ERR_HOOK_ABORTED',
    /hook verified aborted the restore: the host: memory restore failed$/,
  );
  assert.equal(a.error?.exitStatus, 23);
  assert.deepEqual(await waitGone(v.notify!.pids.map((p) => p.restored)), []);
  await endsClean(h);
});

test('swrk: a host that disconnects mid-restore gets the tree taken down and the service ended', async (t) => {
  const { image, dir } = await buildAndDump(t, alive);
  writeImage(dir, image);
  const h = host(t);
  h.send({ type: T.RESTORE, restore: { imagesDir: dir, notify: true, hold: true } });
  const n = await h.next();
  assert.equal(n.notify?.hook, 'treeBuilt');
  const pids = n.notify!.pids.map((p) => p.restored);
  assert.ok(pids.every(exists));
  h.close();
  const [code] = await h.exited;
  assert.equal(code, 0, h.stderr);
  assert.deepEqual(await waitGone(pids), []);
  assert.deepEqual(readdirSync(dir), ['pidfd-cr.img'], 'no run directory left');
});

test('swrk: a held tree that loses a task is taken down; an unrequested TEARDOWN response says why', async (t) => {
  const { image, dir } = await buildAndDump(t, alive);
  writeImage(dir, image);
  const h = host(t);
  const r = await h.ask({ type: T.RESTORE, restore: { imagesDir: dir, hold: true } });
  assert.equal(r.restore?.held, true, r.error?.message);
  const pids = r.restore!.pids.map((p) => p.restored);
  const child = r.restore!.pids.find((p) => p.dumped !== image.rootPid)!;
  assert.ok(pids.every(exists));
  process.kill(child.restored, 'SIGKILL');
  const lost = await h.next();
  expectError(
    lost,
    T.TEARDOWN,
    'PCR_ERR_TASK_EXITED',
    new RegExp(
      `^the held tree was taken down: task ${child.dumped} \\(pid ${child.restored}\\) exited`,
    ),
  );
  assert.deepEqual(await waitGone(pids), []);
  await endsClean(h);
});

test('swrk: a bad fd argument is a usage error', () => {
  for (const [args, message] of [
    [[], /needs exactly one argument/],
    [['x'], /must be a number, got 'x'/],
    [['1'], /fd 1 is stdin, stdout or stderr/],
    [['97'], /fd 97: .*EBADF/],
  ] as const) {
    const r = cli(['swrk', ...args]);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, message);
  }
  // A pipe is not a SEQPACKET socket.
  const r = spawnSync(
    'sh',
    ['-c', `exec 3</dev/null; exec "${process.execPath}" "${CLI}" swrk 3`],
    {
      encoding: 'utf8',
    },
  );
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /swrk: fd 3: .*ENOTSOCK/);
});
