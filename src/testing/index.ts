/** Real example process trees holding real pidfds (tests and `pidfd-cr demo`). */
export * from './spec.js';
export { buildTree, type BuiltTree, type BuildOptions } from './builder.js';
export {
  describeImage,
  expectTree,
  partition,
  type ExpectedFd,
  type ExpectedTarget,
  type ExpectedTask,
  type ExpectedTree,
  type TreeIds,
} from './expected.js';
export { planTree, fileFlagsOf, type Plan, type PlannedStep, type Step } from './plan.js';
export { resolveSpec, SpecError, checkStatus, statusScript } from './validate.js';
export { DEMO_TREE } from './demo.js';
