/** Kernel limits that image validation depends on, read from /proc when validating. */
import { readFileSync } from 'node:fs';

/** The kernel's default for fs.nr_open, used when /proc/sys/fs/nr_open cannot be read. */
export const DEFAULT_NR_OPEN = 1048576;

/** Upper bound (exclusive) of fd numbers: /proc/sys/fs/nr_open, else DEFAULT_NR_OPEN. */
export function readFdLimit(path = '/proc/sys/fs/nr_open'): number {
  try {
    const n = Number(readFileSync(path, 'utf8').trim());
    return Number.isSafeInteger(n) && n > 0 ? n : DEFAULT_NR_OPEN;
  } catch {
    return DEFAULT_NR_OPEN;
  }
}
