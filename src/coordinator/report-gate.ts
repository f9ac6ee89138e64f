/**
 * Gives the reported fds their open-file classes (verify/report.ts: kcmp between the
 * reported fds of one ino, here once instead of in every worker). Reports are held until
 * every worker reported: by then each one holds its final table (a worker reports after
 * finalize and keeps every fd until TEARDOWN; it reports only once its own sends are done
 * and the temps of every dead target it holds are reaped), so kcmp sees the final tree.
 */
import type { WorkerMessage } from '../protocol/messages.js';
import { fileClasses, withFileClasses } from '../verify/report.js';

type FdReportMessage = Extract<WorkerMessage, { type: 'FD_REPORT' }>;

export class ReportGate {
  private readonly held = new Map<number, FdReportMessage>();

  /**
   * @param expected  how many tasks report
   * @param restoredOf the registered restored pid of a dumped pid
   */
  constructor(
    private readonly expected: number,
    private readonly restoredOf: (dumped: number) => number | undefined,
  ) {}

  /** The classified reports once the last one is in, else none. Throws if kcmp fails. */
  add(message: FdReportMessage): FdReportMessage[] {
    this.held.set(message.report.pid, message);
    if (this.held.size < this.expected) return [];
    const held = [...this.held.values()];
    this.held.clear();
    const restored = (m: FdReportMessage): number =>
      this.restoredOf(m.report.pid) ?? m.report.restoredPid;
    const classes = fileClasses(held.map((m) => ({ restoredPid: restored(m), fds: m.report.fds })));
    return held.map((m) => ({ ...m, report: withFileClasses(m.report, restored(m), classes) }));
  }
}
