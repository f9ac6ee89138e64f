/**
 * Frames a worker sent just before exiting (its last TRACEs) may still wait in the ROUTER
 * behind the pidfd exit event. A worker that traced and exited 0 sent its
 * `tearing-down -> done` last (its DEALER lingers until it left): the coordinator waits
 * for exactly those, bounded, instead of guessing a delay.
 */
export const FINAL_TRACE_MS = 2000;

export class FinalTraces {
  /** Workers (dumped pids) that traced at all, exited with 0, traced their `done`. */
  private readonly tracing = new Set<number>();
  private readonly cleanExits = new Set<number>();
  private readonly doneTraced = new Set<number>();

  traced(dumped: number, to: string): void {
    this.tracing.add(dumped);
    if (to === 'done') this.doneTraced.add(dumped);
  }

  exited(dumped: number, status: number): void {
    if (status === 0) this.cleanExits.add(dumped);
  }

  async wait(maxMs = FINAL_TRACE_MS): Promise<void> {
    // No worker traced: no frame of theirs matters any more.
    if (this.tracing.size === 0) return;
    const deadline = Date.now() + maxMs;
    while (this.missing() > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  private missing(): number {
    return [...this.cleanExits].filter((p) => this.tracing.has(p) && !this.doneTraced.has(p))
      .length;
  }
}
