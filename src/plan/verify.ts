/**
 * Pure verification: compares what the workers report from /proc after the restore with
 * the image, modulo the pid map. A restored pidfd can never carry a dumped ino (except an
 * external target's), so identity is compared as classes: which fds share an ino, which
 * share one open file description (kcmp).
 */
import type { Image } from '../image/model.js';
import type { FdReport, PidMap } from './messages.js';

export type DifferenceKind =
  | 'missing-report'
  | 'unexpected-report'
  | 'missing-fd'
  | 'extra-fd'
  | 'flags'
  | 'cloexec'
  | 'target'
  | 'exit-status'
  | 'ino-class'
  | 'file-class';

export interface Difference {
  kind: DifferenceKind;
  /** Dumped pid of the task at fault. */
  pid: number;
  fd?: number;
  /** One sentence naming task, fd, expected and found. */
  message: string;
}

export function compareReports(
  _image: Image,
  _pidMap: PidMap,
  _reports: readonly FdReport[],
): Difference[] {
  throw new Error('compareReports: not implemented yet');
}
