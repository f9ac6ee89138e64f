/**
 * `pidfd-cr check` on this machine: its JSON answers are checked against facts the test
 * measures itself (uname, Yama's ptrace_scope file, our own capabilities from
 * /proc/self/status, the kernel version each pidfd feature arrived in), and a machine
 * where something restore needs cannot work (a TMPDIR where no ipc directory can be
 * made) exits 17 naming the failed system call and errno. Nothing is left behind.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI } from '../fixtures/dump-helpers.js';
import { PROBE_IDS, type CheckReport } from '../../src/check/index.js';
import { EXIT_CODES } from '../../src/errors.js';
import { worldReadableCopy } from '../helpers/world-readable.js';

function runCheck(env: NodeJS.ProcessEnv, args: string[] = ['--json']) {
  return spawnSync(process.execPath, [CLI, 'check', ...args], { encoding: 'utf8', env });
}

/** Kernel version as [major, minor] from `uname -r`, measured here. */
const kernel = (): [number, number] => {
  const m = /^(\d+)\.(\d+)/.exec(execFileSync('uname', ['-r'], { encoding: 'utf8' }))!;
  return [Number(m[1]), Number(m[2])];
};
const atLeast = (v: [number, number], major: number, minor: number): boolean =>
  v[0] > major || (v[0] === major && v[1] >= minor);

function ourCapabilities(): Set<string> {
  const hex = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]!;
  const eff = BigInt(`0x${hex}`);
  const named: Record<string, number> = {
    CAP_DAC_OVERRIDE: 1,
    CAP_SYS_PTRACE: 19,
    CAP_SYS_ADMIN: 21,
    CAP_CHECKPOINT_RESTORE: 40,
  };
  return new Set(Object.keys(named).filter((n) => ((eff >> BigInt(named[n]!)) & 1n) === 1n));
}

test('check --json here: answers agree with what the test measures itself', (t) => {
  const tmp = mkdtempSync(join(tmpdir(), 'pcr-check-test-'));
  t.after(() => rmSync(tmp, { recursive: true, force: true }));
  const r = runCheck({ ...process.env, TMPDIR: tmp });
  const report = JSON.parse(r.stdout) as CheckReport;
  assert.equal(r.status, report.ok ? 0 : EXIT_CODES.PCR_ERR_CHECK, r.stderr);
  assert.equal(report.v, 1);
  assert.equal(report.kernel.release, execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim());
  assert.equal(report.kernel.machine, execFileSync('uname', ['-m'], { encoding: 'utf8' }).trim());
  assert.equal(report.uid, process.getuid!());
  assert.deepEqual(new Set(report.capabilities), ourCapabilities());
  assert.deepEqual(
    report.probes.map((p) => p.id),
    [...PROBE_IDS],
  );
  const probe = (id: string) => report.probes.find((p) => p.id === id)!;
  for (const p of report.probes) {
    if (!p.ok) assert.ok(p.error?.message, `${p.id} failed without saying why`);
    t.diagnostic(`${p.ok ? 'ok  ' : 'FAIL'} ${p.id}: ${p.detail}`);
  }

  // Yama's file, read here.
  const scopeFile = '/proc/sys/kernel/yama/ptrace_scope';
  const scope = existsSync(scopeFile) ? Number(readFileSync(scopeFile, 'utf8').trim()) : null;
  assert.equal(probe('ptrace-scope').value, scope);
  const caps = ourCapabilities();
  assert.equal(
    probe('ptrace-others').ok,
    scope === null || scope === 0 || (scope !== 3 && caps.has('CAP_SYS_PTRACE')),
  );

  // The kernel version each feature arrived in (notes/linux-pidfd.md, README).
  const v = kernel();
  assert.equal(probe('pidfd-open').ok, atLeast(v, 5, 3));
  assert.equal(probe('pidfd-thread').ok, atLeast(v, 6, 9));
  assert.equal(probe('pidfd-exit-info').ok, atLeast(v, 6, 15));
  assert.equal(probe('pidfd-get-info').ok, atLeast(v, 6, 13));
  // Choosing pids needs CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN over our pid namespace.
  const mayChoose = caps.has('CAP_CHECKPOINT_RESTORE') || caps.has('CAP_SYS_ADMIN');
  assert.equal(probe('clone3-set-tid').ok, mayChoose);
  assert.equal(probe('ns-last-pid').ok, mayChoose);
  if (!mayChoose) assert.equal(probe('clone3-set-tid').error?.errnoName, 'EPERM');

  // Features follow their probes: the dump's exit statuses need PIDFD_INFO_EXIT.
  const feature = (command: string, id: string) =>
    report.features.find((f) => f.command === command && f.id === id)!;
  assert.equal(feature('dump', 'exit-status').works, probe('pidfd-exit-info').ok);
  assert.equal(feature('restore', 'workers').works, probe('zeromq-ipc').ok);
  assert.equal(
    report.ok,
    report.features.every((f) => f.works || !f.needed),
  );
  assert.deepEqual(readdirSync(tmp), [], 'the ipc directory was removed');
});

test('check (text) prints every probe and a verdict', () => {
  const r = runCheck(process.env, []);
  assert.equal(r.status === 0 || r.status === EXIT_CODES.PCR_ERR_CHECK, true, r.stderr);
  for (const id of PROBE_IDS) assert.match(r.stdout, new RegExp(`^  (ok  |FAIL)  ${id} `, 'm'));
  assert.match(r.stdout, /^dump:$/m);
  assert.match(r.stdout, /^restore:$/m);
  assert.match(r.stdout, /^result: /m);
});

test('check where restore cannot work (no usable TMPDIR): exit 17, the syscall and errno named', () => {
  const missing = join(tmpdir(), `pcr-check-missing-${process.pid}`, 'no', 'such');
  const r = runCheck({ ...process.env, TMPDIR: missing });
  assert.equal(r.status, EXIT_CODES.PCR_ERR_CHECK, r.stderr);
  assert.equal(r.status, 17);
  const report = JSON.parse(r.stdout) as CheckReport;
  assert.equal(report.ok, false);
  const ipc = report.probes.find((p) => p.id === 'zeromq-ipc')!;
  assert.equal(ipc.ok, false);
  assert.equal(ipc.error?.syscall, 'mkdtemp');
  assert.equal(ipc.error?.errnoName, 'ENOENT');
  assert.equal(ipc.error?.errno, 2);
  const workers = report.features.find((f) => f.command === 'restore' && f.id === 'workers')!;
  assert.equal(workers.works, false);
  assert.deepEqual(workers.failed, ['zeromq-ipc']);
  assert.match(
    r.stderr,
    /^pidfd-cr: check: dump or restore cannot work fully here: restore: worker processes/,
  );
  assert.equal(r.stderr.split('\n').filter(Boolean).length, 1, r.stderr);
  assert.equal(existsSync(missing), false);
});

test('check --bogus is a usage error', () => {
  const r = runCheck(process.env, ['--bogus']);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /^pidfd-cr: check: /);
});

test('check as nobody (no capabilities): pid choice refused with EPERM, dump and restore still work', (t) => {
  if (process.getuid?.() !== 0 || !existsSync('/usr/bin/setpriv')) {
    t.skip('needs root to drop to another uid with setpriv');
    return;
  }
  const { cli, remove } = worldReadableCopy();
  t.after(remove);
  const tmp = mkdtempSync(join(tmpdir(), 'pcr-check-nobody-'));
  chmodSync(tmp, 0o777);
  t.after(() => rmSync(tmp, { recursive: true, force: true }));
  const r = spawnSync(
    '/usr/bin/setpriv',
    [
      '--reuid=65534',
      '--regid=65534',
      '--clear-groups',
      '--inh-caps=-all',
      process.execPath,
      cli,
      'check',
      '--json',
    ],
    { encoding: 'utf8', cwd: '/', env: { ...process.env, TMPDIR: tmp } },
  );
  const report = JSON.parse(r.stdout) as CheckReport;
  assert.equal(report.uid, 65534);
  assert.deepEqual(report.capabilities, []);
  const probe = (id: string) => report.probes.find((p) => p.id === id)!;
  assert.equal(probe('clone3-set-tid').ok, false);
  assert.equal(probe('clone3-set-tid').error?.syscall, 'clone3');
  assert.equal(probe('clone3-set-tid').error?.errnoName, 'EPERM');
  assert.equal(probe('ns-last-pid').ok, false);
  assert.equal(probe('ns-last-pid').error?.errnoName, 'EPERM');
  assert.match(probe('ns-last-pid').detail, /\/proc\/sys\/kernel\/ns_last_pid/);
  const samePids = report.features.find((f) => f.id === 'same-pids')!;
  assert.equal(samePids.works, false);
  assert.equal(samePids.needed, false);
  // What an unprivileged user needs works without privilege (notes: linux-pidfd.md).
  for (const id of ['pidfd-open', 'pidfs-handles', 'kcmp', 'scm-rights', 'ptrace', 'zeromq-ipc'])
    assert.equal(probe(id).ok, true, `${id}: ${probe(id).detail}`);
  assert.equal(r.status, report.ok ? 0 : 17, r.stderr);
  assert.deepEqual(readdirSync(tmp), []);
});
