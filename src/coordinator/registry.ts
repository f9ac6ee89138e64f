/**
 * Which workers may talk to the coordinator. ZeroMQ cannot say who sent a frame, so a
 * HELLO counts only if the kernel vouches for it: the process whose pid the HELLO claims
 * (`restoredPid`) must have sent the same nonce over the auth socket, where SO_PEERCRED
 * gives its real pid (auth.ts). A HELLO without that proof is forged: it is refused and
 * the restore stops naming the task (the forger holds the task's routing id, so the real
 * worker's frames can no longer reach us: ZeroMQ drops a second peer with that id).
 *
 * A proven HELLO is accepted once its restored pid is the one the coordinator expects
 * for that dumped pid: the root's is known (the coordinator spawned it), the others come
 * from their parent's CHILDREN_SPAWNED. A proven HELLO that arrives before its
 * expectation waits for it; one that contradicts it comes from another process of our
 * uid posing as the worker: the restore stops naming that process. A proof counts for a
 * process, not a pid number: its pidfs ino (SO_PEERPIDFD) must be the ino of the worker
 * the coordinator watches, so a proof left by an earlier holder of a reused pid does not
 * count. A start-up failure
 * reported over the auth socket is judged the same way, by the sender's kernel pid.
 */
import { timingSafeEqual } from 'node:crypto';
import { PcrError } from '../errors.js';
import type { Failure, PidPair, WorkerFailed, WorkerHello } from '../protocol/messages.js';
import type { Proof } from './auth-listener.js';

/** Where proofs come from (AuthListener in production). */
export interface ProofSource {
  proofOf(pid: number): Proof | undefined;
}

/**
 * The pidfs ino of the process the coordinator knows as task `dumped`'s worker (through
 * the pidfd it watches it by), or undefined when it holds none.
 */
export type WorkerIdentity = (dumped: number) => bigint | undefined;

/** What the coordinator machine may now see, in order. */
export type Admitted = WorkerHello | WorkerFailed;

interface Held {
  hello?: WorkerHello;
  /** A start-up failure from the kernel pid `from`. */
  failure?: { from: number; message: WorkerFailed };
}

const impostor = (message: string): PcrError => new PcrError('PCR_ERR_RESTORE', message);

const sameNonce = (a: Uint8Array, b: Uint8Array | undefined): boolean =>
  b !== undefined && a.length === b.length && a.length > 0 && timingSafeEqual(a, b);

export class Registry {
  private readonly expected = new Map<number, number>();
  /** Proven messages of dumped pids not expected yet. */
  private readonly held = new Map<number, Held>();
  private readonly ok = new Set<number>();
  /** The pidfs ino of the process that proved each HELLO (dumped pid -> ino). */
  private readonly provers = new Map<number, bigint>();

  constructor(
    private readonly proofs: ProofSource,
    private readonly identity: WorkerIdentity = () => undefined,
  ) {}

  /**
   * Records expectations; returns the held messages they now admit. Throws a PcrError
   * naming the process if a held one came from another process than the expected one.
   */
  expect(pairs: readonly PidPair[]): Admitted[] {
    for (const p of pairs) this.expected.set(p.dumped, p.restored);
    const now: Admitted[] = [];
    for (const [pid, held] of this.held) {
      if (!this.expected.has(pid)) continue;
      this.held.delete(pid);
      if (held.hello) now.push(this.judge(held.hello));
      if (held.failure) now.push(this.judgeFailure(held.failure.from, held.failure.message));
    }
    return now;
  }

  /**
   * A HELLO arrived: returns it if accepted now, [] if it waits for its expectation.
   * Throws a PcrError if it is forged, comes from the wrong process, or is a second one.
   */
  hello(h: WorkerHello): WorkerHello[] {
    const proof = this.proofs.proofOf(h.restoredPid);
    if (proof === undefined || proof.dumped !== h.pid || !sameNonce(proof.nonce, h.nonce)) {
      throw impostor(
        `task ${h.pid}: refused a forged WORKER_HELLO claiming pid ${h.restoredPid} ` +
          `(that process did not prove this HELLO on the auth socket); ` +
          `another process holds the task's control link`,
      );
    }
    if (this.ok.has(h.pid) || this.held.get(h.pid)?.hello) {
      throw impostor(`task ${h.pid}: a second WORKER_HELLO (from pid ${h.restoredPid})`);
    }
    this.provers.set(h.pid, proof.ino);
    if (!this.expected.has(h.pid)) {
      this.held.set(h.pid, { ...this.held.get(h.pid), hello: h });
      return [];
    }
    return [this.judge(h)];
  }

  /**
   * A start-up failure from kernel pid `from`, for dumped pid `dumped`: returns it as
   * WORKER_FAILED once `from` is known to be that task's worker, [] while that is not
   * known yet; throws a PcrError if `from` is not that task's worker.
   */
  startupFailure(from: number, dumped: number, failure: Failure): WorkerFailed[] {
    const message: WorkerFailed = { type: 'WORKER_FAILED', pid: dumped, failure };
    if (!this.expected.has(dumped)) {
      this.held.set(dumped, { ...this.held.get(dumped), failure: { from, message } });
      return [];
    }
    return [this.judgeFailure(from, message)];
  }

  private judge(h: WorkerHello): WorkerHello {
    this.refuseStranger(h.pid, h.restoredPid, 'WORKER_HELLO');
    // Same pid, but was it the same process? A proof from an earlier holder of a reused
    // pid names another pidfs ino than the worker the coordinator watches.
    const want = this.identity(h.pid);
    const got = this.provers.get(h.pid);
    if (want !== undefined && got !== want) {
      throw impostor(
        `task ${h.pid}: refused a WORKER_HELLO proven by another process that had pid ` +
          `${h.restoredPid} (pidfs ino ${String(got)}; the worker's is ${want})`,
      );
    }
    this.ok.add(h.pid);
    return h;
  }

  private judgeFailure(from: number, message: WorkerFailed): WorkerFailed {
    this.refuseStranger(message.pid, from, 'start-up failure');
    return message;
  }

  private refuseStranger(dumped: number, pid: number, what: string): void {
    const expected = this.expected.get(dumped);
    if (expected !== pid) {
      throw impostor(
        `task ${dumped}: refused a ${what} from pid ${pid}, which is not its worker ` +
          `(pid ${expected}; checked with SO_PEERCRED): another process poses as it`,
      );
    }
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
