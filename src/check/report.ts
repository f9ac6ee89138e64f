/**
 * The report of `pidfd-cr check`: the probes, the features they make work, and the
 * verdict. `--json` prints `CheckReport` as is (schema `v: 1`, docs/cli.md "check");
 * the text form is for people.
 */
import { machine, release } from 'node:os';
import { runProbes, type CapabilityName, type ProbeResult } from './probes.js';
import { judgeFeatures, type FeatureResult } from './features.js';

export const CHECK_VERSION = 1;

export interface CheckReport {
  v: typeof CHECK_VERSION;
  /** Every needed feature works: dump and restore work here. */
  ok: boolean;
  kernel: { release: string; machine: string };
  uid: number;
  /** Of CAP_DAC_OVERRIDE, CAP_SYS_PTRACE, CAP_SYS_ADMIN, CAP_CHECKPOINT_RESTORE: those we have. */
  capabilities: CapabilityName[];
  probes: ProbeResult[];
  features: FeatureResult[];
}

export async function runCheck(): Promise<CheckReport> {
  const { probes, capabilities } = await runProbes();
  const features = judgeFeatures(probes);
  return {
    v: CHECK_VERSION,
    ok: features.every((f) => f.works || !f.needed),
    kernel: { release: release(), machine: machine() },
    uid: process.getuid?.() ?? -1,
    capabilities,
    probes,
    features,
  };
}

/** The needed features that do not work, as `command: text` lines. */
export const missingFeatures = (r: CheckReport): string[] =>
  r.features.filter((f) => f.needed && !f.works).map((f) => `${f.command}: ${f.text}`);

export function formatCheck(r: CheckReport): string {
  const out: string[] = [];
  out.push(
    `Linux ${r.kernel.release} ${r.kernel.machine}, uid ${r.uid}, capabilities: ${r.capabilities.join(' ') || 'none'}`,
  );
  out.push('probes:');
  const width = Math.max(...r.probes.map((p) => p.id.length));
  for (const p of r.probes)
    out.push(`  ${p.ok ? 'ok  ' : 'FAIL'}  ${p.id.padEnd(width)}  ${p.detail}`);
  for (const command of ['dump', 'restore'] as const) {
    out.push(`${command}:`);
    for (const f of r.features.filter((x) => x.command === command)) {
      const why = f.works ? '' : ` (fails: ${f.failed.join(', ')})`;
      const optional = f.needed ? '' : ' [optional]';
      out.push(`  ${f.works ? 'yes' : 'no '}  ${f.text}${optional}${why}`);
    }
  }
  const missing = missingFeatures(r);
  out.push(
    missing.length === 0
      ? 'result: dump and restore work here'
      : `result: ${missing.length === 1 ? '1 needed feature does' : `${missing.length} needed features do`} not work here`,
  );
  return out.join('\n') + '\n';
}
