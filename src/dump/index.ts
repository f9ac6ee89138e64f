/** `pidfd-cr dump` as a library (docs/dump.md). */
export {
  dumpTree,
  dumpToDir,
  readFrozenTree,
  type DumpOptions,
  type DumpToDirOptions,
} from './dump.js';
export { freezeTree, type FreezeOptions, type FrozenTree } from './freeze.js';
export { walkTree, type WalkedTask, type WalkReaders } from './walk.js';
export { openFileClasses, type FileCompare, type HeldPidfd } from '../sys/file-classes.js';
export { classifyTarget, type TargetProbes, type TreeFacts } from './classify.js';
export { checkImageDir } from './preflight.js';
export { hostContext, FREEZE_METHOD } from './host.js';
