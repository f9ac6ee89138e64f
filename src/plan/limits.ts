/**
 * How much a restore may make: a hostile or damaged image must not make us start
 * thousands of processes (each worker is a Node process, ~50 MB). Checked on the plan,
 * before anything is spawned. Pure.
 */
import { PcrError } from '../errors.js';
import { count } from '../text.js';
import type { RestorePlan } from './types.js';

export interface RestoreLimits {
  /** Workers + restored zombies + temporary processes of dead targets. */
  maxProcesses: number;
  /** pidfds installed in all tasks together. */
  maxPidfds: number;
}

export const DEFAULT_LIMITS: RestoreLimits = { maxProcesses: 1024, maxPidfds: 1 << 20 };

export interface PlanSize {
  processes: number;
  pidfds: number;
}

export function planSize(plan: RestorePlan): PlanSize {
  let processes = plan.deadGroups.length;
  let pidfds = 0;
  for (const t of plan.tasks) {
    processes += 1 + t.zombieChildren.length;
    pidfds += t.fds.length;
  }
  return { processes, pidfds };
}

/** PCR_ERR_LIMIT naming what the image needs and the limit it exceeds. */
export function checkPlanLimits(plan: RestorePlan, limits: RestoreLimits): void {
  const size = planSize(plan);
  if (size.processes > limits.maxProcesses) {
    throw new PcrError(
      'PCR_ERR_LIMIT',
      `the image needs ${count(size.processes, 'process', 'processes')} (workers, zombies, ` +
        `temporary processes), more than the limit of ${limits.maxProcesses} (--max-processes)`,
    );
  }
  if (size.pidfds > limits.maxPidfds) {
    throw new PcrError(
      'PCR_ERR_LIMIT',
      `the image holds ${count(size.pidfds, 'pidfd')}, more than the limit of ${limits.maxPidfds}`,
    );
  }
}
