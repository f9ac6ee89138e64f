/**
 * Worker exits, delivered topmost first. A worker's death takes its child workers with it
 * (PDEATHSIG), and their exits can be seen first. Exits seen within EXIT_WINDOW_MS are
 * delivered topmost first (fewest ancestors in the plan), so the failure names the worker
 * that died, not a victim.
 */
export const EXIT_WINDOW_MS = 50;

export class ExitOrder {
  private exits: Array<{ pid: number; status: number }> = [];
  private timer: NodeJS.Timeout | undefined;

  /**
   * @param parentOf dumped pid -> dumped parent pid (0 for the root)
   * @param collect  looks for exits not yet seen (an ancestor dead but not yet reported)
   * @param deliver  receives each exit, topmost first
   */
  constructor(
    private readonly parentOf: ReadonlyMap<number, number>,
    private readonly collect: () => void,
    private readonly deliver: (pid: number, status: number) => void,
  ) {}

  add(pid: number, status: number): void {
    this.exits.push({ pid, status });
    this.timer ??= setTimeout(() => this.flush(), EXIT_WINDOW_MS);
  }

  cancel(): void {
    clearTimeout(this.timer);
  }

  private flush(): void {
    this.collect(); // an ancestor dead but not yet seen is blamed first
    this.timer = undefined;
    const exits = this.exits.splice(0);
    exits.sort((a, b) => this.depth(a.pid) - this.depth(b.pid));
    for (const e of exits) this.deliver(e.pid, e.status);
  }

  private depth(pid: number): number {
    let d = 0;
    for (
      let p = this.parentOf.get(pid);
      p !== undefined && p !== 0 && d < this.parentOf.size;
      p = this.parentOf.get(p)
    )
      d++;
    return d;
  }
}
