/**
 * Which workers may talk to the coordinator. A HELLO is accepted only if its restored
 * pid is the one the coordinator expects for that dumped pid: the root's is known (the
 * coordinator spawned it), the others come from their parent's CHILDREN_SPAWNED. A HELLO
 * that arrives before its expectation waits for it; one that contradicts it is dropped.
 */
import type { PidPair, WorkerHello } from '../plan/messages.js';

export class Registry {
  private readonly expected = new Map<number, number>();
  private readonly pending = new Map<number, WorkerHello>();
  private readonly ok = new Set<number>();
  /** HELLOs that contradicted the expectation (impostors, confusion), for diagnostics. */
  readonly refused: WorkerHello[] = [];

  /** Records expectations; returns the pending HELLOs they now accept. */
  expect(pairs: readonly PidPair[]): WorkerHello[] {
    for (const p of pairs) this.expected.set(p.dumped, p.restored);
    const now: WorkerHello[] = [];
    for (const [pid, hello] of this.pending) {
      if (this.expected.has(pid)) {
        this.pending.delete(pid);
        now.push(...this.judge(hello));
      }
    }
    return now;
  }

  /** A HELLO arrived: returns it if accepted now, [] if refused or waiting. */
  hello(h: WorkerHello): WorkerHello[] {
    if (!this.expected.has(h.pid)) {
      this.pending.set(h.pid, h);
      return [];
    }
    return this.judge(h);
  }

  private judge(h: WorkerHello): WorkerHello[] {
    if (this.expected.get(h.pid) !== h.restoredPid || this.ok.has(h.pid)) {
      this.refused.push(h);
      return [];
    }
    this.ok.add(h.pid);
    return [h];
  }

  isAccepted(dumped: number): boolean {
    return this.ok.has(dumped);
  }

  accepted(): number[] {
    return [...this.ok];
  }

  restoredOf(dumped: number): number | undefined {
    return this.ok.has(dumped) ? this.expected.get(dumped) : undefined;
  }
}
