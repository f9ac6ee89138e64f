/**
 * What each pidfs inode of the tree refers to (docs/dump.md, "Classification"). Pure:
 * the facts about the tree and the probes that read the kernel are passed in. Each target
 * kind recognises its own pidfds (src/kinds, `recognise`):
 *
 * - fdinfo Pid -1: the target was reaped → dead (exit status from PIDFD_INFO_EXIT).
 * - Pid of a task of the tree → in-tree-alive or in-tree-zombie (a live pid number
 *   names one process, and the tree is frozen; the task's own ino must match).
 * - Pid of a non-leader thread of a task → thread.
 * - any other Pid → external (a thread if its Tgid differs).
 * - Pid 0: the target lives in a pid namespace the dumper cannot see → refused.
 */
import { PcrError } from '../errors.js';
import type { Target } from '../model/image.js';
import type { ProcPidfd } from '../procfs/index.js';
import type { TargetProbes, TreeFacts } from '../kinds/kind.js';
import { TARGET_KINDS } from '../kinds/registry.js';

export type { DeadInfo, ExternalInfo, TargetProbes, TreeFacts } from '../kinds/kind.js';

export function classifyTarget(
  holder: number,
  p: ProcPidfd,
  tree: TreeFacts,
  probes: TargetProbes,
): Target {
  const where = `task ${holder} fd ${p.fd}`;
  if (p.pid === 0) {
    throw new PcrError(
      'PCR_ERR_UNSUPPORTED',
      `${where}: its target is in a pid namespace this dumper cannot see (fdinfo Pid 0)`,
    );
  }
  const sighting = { holder, pidfd: p, tree, probes, where };
  const found = TARGET_KINDS.flatMap((k) => k.recognise(sighting) ?? []);
  if (found.length !== 1) {
    const kinds = found.map((t) => t.kind).join(', ') || 'none';
    throw new PcrError(
      'PCR_ERR_INTERNAL',
      `${where}: target pid ${p.pid} is recognised by ${found.length} target kinds (${kinds}), not one`,
    );
  }
  return found[0]!;
}
