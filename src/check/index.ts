/** `pidfd-cr check`: what this machine's kernel and permissions allow (docs/cli.md). */
export {
  runCheck,
  formatCheck,
  missingFeatures,
  CHECK_VERSION,
  type CheckReport,
} from './report.js';
export { PROBE_IDS, type ProbeId, type ProbeResult, type ProbeError } from './probes.js';
export { FEATURES, judgeFeatures, type FeatureResult, type FeatureSpec } from './features.js';
