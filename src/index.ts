/**
 * pidfd-cr as a library: what a larger C/R tool embeds. The CLI (src/cli) is a thin shell
 * over exactly these calls. Effects stay behind these entry points; the planner, the
 * machines and verification are pure and can be driven by a tool's own runtime (the task
 * protocol is proto/protocol.proto, so tasks may be written in other languages).
 */
export * from './errors.js';

// Dump: freeze a live tree and read its pidfds into an in-memory image.
export { dumpTree, dumpToDir, type DumpOptions, type DumpToDirOptions } from './dump/index.js';

// Image: the model, the file format and its readable/JSON forms.
export * from './model/image.js';
export { encodeImage, decodeImage } from './image/codec.js';
export { readImage, writeImage, imagePath, IMAGE_FILE_NAME } from './image/store.js';
export { formatImage, imageToJson, type ImageJson } from './image/show.js';

// Restore: the whole restore, embeddable (no process.exit, no argv).
export { restoreImage, type RestoreResult } from './restore/restore-image.js';
export type { RestoreOptions } from './restore/options.js';
export type { Hook, HookContext, RestoreHooks } from './coordinator/settings.js';
export { HOOK_NAMES, type HookName } from './machines/coordinator.js';
export {
  TRACE_VERSION,
  TRACE_KINDS,
  formatTraceLine,
  type TraceEvent,
  type TraceKind,
  type TraceProcess,
  type TraceTransfer,
  type TraceSink,
} from './protocol/trace.js';
export {
  stderrTraceSink,
  fileTraceSink,
  teeSinks,
  TRACE_HOLD_MS,
  type OrderedTraceSink,
} from './restore/trace-sinks.js';
// What this machine allows (`pidfd-cr check`).
export { runCheck, type CheckReport, type ProbeResult, type FeatureResult } from './check/index.js';

// Hand-off (docs/restore.md "Hand-off"): for programs started by --exec, and for hosts of
// --handoff-socket written in TypeScript.
export { restoreCloexecFromEnv, cloexecFdsFromEnv, CLOEXEC_FDS_ENV } from './sys/cloexec-env.js';
export type { ExecSpec } from './coordinator/exec-spec.js';
export { decodeHandoffMessage, HANDOFF_BATCH_MAX } from './protocol/handoff.js';

// The pure core, for tools that run their own processes.
export { planRestore } from './plan/planner.js';
export { checkPlanLimits, planSize, DEFAULT_LIMITS, type RestoreLimits } from './plan/limits.js';
export type * from './plan/types.js';
export type * from './protocol/messages.js';
export { compareReports, type Difference, type DifferenceKind } from './verify/compare.js';
export { taskMachine } from './machines/task.js';
export { coordinatorMachine } from './machines/coordinator.js';

// Real process trees from a declarative spec (what `pidfd-cr demo` and the tests build)
// are not part of this API: they are the `pidfd-cr/testing` entry (src/testing/index.ts).
