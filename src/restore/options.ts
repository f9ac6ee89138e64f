/**
 * restoreImage's options, checked before anything starts: an embedding tool's mistake is
 * a PCR_ERR_USAGE naming the option, not a timer that fires at once (setTimeout turns
 * NaN, negative or > 2^31-1 ms into 1 ms) or a safety limit that silently compares false.
 */
import { PcrError } from '../errors.js';
import { DEFAULT_LIMITS, type RestoreLimits } from '../plan/limits.js';
import { describe } from '../text.js';
import type { RestoreOptions } from './restore-image.js';

/** The longest delay setTimeout takes. */
const MAX_DELAY_MS = 2 ** 31 - 1;

const usage = (option: string, value: unknown, want: string): PcrError =>
  new PcrError('PCR_ERR_USAGE', `restore option ${option}: ${describe(value)} is not ${want}`);

function checkInt(option: string, value: unknown, min: number, max: number): void {
  if (value === undefined) return;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max)
    throw usage(option, value, `an integer from ${min} to ${max}`);
}

/** Checks every option; returns the limits in force (limitsOf). */
export function checkRestoreOptions(o: RestoreOptions): RestoreLimits {
  checkInt('timeoutMs', o.timeoutMs, 1, MAX_DELAY_MS);
  checkInt('teardownGraceMs', o.teardownGraceMs, 0, MAX_DELAY_MS);
  if (o.workerStderr !== null) checkInt('workerStderr', o.workerStderr, 0, MAX_DELAY_MS);
  if (o.hold && o.signal === undefined)
    throw new PcrError('PCR_ERR_USAGE', 'restore option hold needs a signal to end the hold');
  for (const [option, path] of [
    ['runDirParent', o.runDirParent],
    ['pidMapPath', o.pidMapPath],
  ] as const) {
    if (path !== undefined && (typeof path !== 'string' || path === ''))
      throw usage(option, path, 'a path');
  }
  for (const key of Object.keys(o.limits ?? {}) as Array<keyof RestoreLimits>) {
    if (!(key in DEFAULT_LIMITS)) throw usage('limits', key, 'a known limit');
  }
  return limitsOf(o);
}

/** The limits in force: the defaults, each replaced by a given positive integer. */
export function limitsOf(o: RestoreOptions): RestoreLimits {
  const limits = { ...DEFAULT_LIMITS };
  for (const key of Object.keys(DEFAULT_LIMITS) as Array<keyof RestoreLimits>) {
    const v = o.limits?.[key];
    if (v === undefined) continue;
    checkInt(`limits.${key}`, v, 1, Number.MAX_SAFE_INTEGER);
    limits[key] = v;
  }
  return limits;
}
