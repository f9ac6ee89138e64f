/** The pure half of `pidfd-cr check`: features from probe results, capabilities, text. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  FEATURES,
  PROBE_IDS,
  judgeFeatures,
  formatCheck,
  type CheckReport,
  type ProbeResult,
} from '../../src/check/index.js';
import { effectiveCapabilities } from '../../src/check/probes.js';

const allOk = (): ProbeResult[] => PROBE_IDS.map((id) => ({ id, ok: true, detail: 'fine' }));
const failing = (...ids: string[]): ProbeResult[] =>
  allOk().map((p) => (ids.includes(p.id) ? { ...p, ok: false, detail: 'no' } : p));

test('every feature names known probes; ids are unique per command', () => {
  for (const f of FEATURES) for (const n of f.needs) assert.ok(PROBE_IDS.includes(n), n);
  const keys = FEATURES.map((f) => `${f.command}:${f.id}`);
  assert.equal(new Set(keys).size, keys.length);
});

test('all probes ok: every feature works', () => {
  assert.ok(judgeFeatures(allOk()).every((f) => f.works && f.failed.length === 0));
});

test('no PIDFD_INFO_EXIT: dead targets fail in dump and restore, nothing else', () => {
  const r = judgeFeatures(failing('pidfd-exit-info'));
  assert.deepEqual(
    r.filter((f) => !f.works).map((f) => `${f.command}:${f.id}`),
    ['dump:exit-status', 'restore:dead'],
  );
  assert.deepEqual(r.find((f) => f.id === 'dead')!.failed, ['pidfd-exit-info']);
});

test('same pids need clone3 set_tid; a new pid namespace also its ns_last_pid; both optional', () => {
  const noLastPid = judgeFeatures(failing('ns-last-pid'));
  assert.equal(noLastPid.find((f) => f.id === 'same-pids')!.works, true);
  assert.equal(noLastPid.find((f) => f.id === 'pidns-new')!.works, false);
  assert.deepEqual(noLastPid.find((f) => f.id === 'pidns-new')!.failed, ['ns-last-pid']);
  const noClone3 = judgeFeatures(failing('clone3-set-tid'));
  assert.equal(noClone3.find((f) => f.id === 'same-pids')!.works, false);
  assert.deepEqual(noClone3.find((f) => f.id === 'same-pids')!.failed, ['clone3-set-tid']);
  assert.equal(noClone3.find((f) => f.id === 'same-pids')!.needed, false);
  assert.equal(noClone3.find((f) => f.id === 'pidns-new')!.needed, false);
});

test('CapEff parsing keeps the four capabilities that matter', () => {
  // bits 1, 19, 21, 40 and some others
  const eff = (1n << 1n) | (1n << 19n) | (1n << 21n) | (1n << 40n) | (1n << 7n);
  assert.deepEqual(
    effectiveCapabilities(`Name:\tx\nCapEff:\t${eff.toString(16).padStart(16, '0')}\n`),
    ['CAP_DAC_OVERRIDE', 'CAP_SYS_PTRACE', 'CAP_SYS_ADMIN', 'CAP_CHECKPOINT_RESTORE'],
  );
  assert.deepEqual(effectiveCapabilities('CapEff:\t0000000000000000\n'), []);
  assert.deepEqual(effectiveCapabilities(`CapEff:\t${(1n << 19n).toString(16)}\n`), [
    'CAP_SYS_PTRACE',
  ]);
});

test('text: failed probes and missing features are shown, with the verdict', () => {
  const probes = failing('zeromq-ipc');
  const features = judgeFeatures(probes);
  const report: CheckReport = {
    v: 1,
    ok: false,
    kernel: { release: '6.18.0', machine: 'x86_64' },
    uid: 1000,
    capabilities: [],
    probes,
    features,
  };
  const text = formatCheck(report);
  assert.match(text, /^Linux 6\.18\.0 x86_64, uid 1000, capabilities: none$/m);
  assert.match(text, /^ {2}FAIL {2}zeromq-ipc +no$/m);
  assert.match(text, /^ {2}no {3}worker processes .* \(fails: zeromq-ipc\)$/m);
  assert.match(text, /^result: 1 needed feature does not work here$/m);
});
