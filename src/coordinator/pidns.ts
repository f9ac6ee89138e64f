/**
 * restore --pidns new: the workers live in a new pid namespace and speak its pids (their
 * CHILDREN_SPAWNED, their HELLO's own pid, the pid map they open targets by), while the
 * coordinator, outside it, watches, authenticates (SO_PEERCRED), kcmp's and reaps them by
 * the pids of its own namespace. This view translates: the root's outer pid is known
 * (the coordinator spawned it, inner pid 1); any other is found among the root's
 * descendants by the last entry of their /proc/<pid>/status NSpid.
 */
import { readChildren, readStatus } from '../procfs/read.js';

function nsPidsOf(pid: number): number[] | undefined {
  try {
    return readStatus(pid).nsPids;
  } catch {
    return undefined; // gone meanwhile
  }
}

function childrenOf(pid: number): number[] {
  try {
    return readChildren(pid);
  } catch {
    return []; // gone meanwhile
  }
}

export class PidnsView {
  /** inner -> outer */
  private readonly outer = new Map<number, number>();

  constructor(private readonly rootOuter: number) {
    this.outer.set(1, rootOuter);
  }

  /** The outer pid of the process with pid `inner` in the new namespace, if it exists. */
  outerOf(inner: number): number | undefined {
    const known = this.outer.get(inner);
    if (known !== undefined && this.innerOf(known) === inner) return known;
    const queue = [this.rootOuter];
    for (let p = queue.shift(); p !== undefined; p = queue.shift()) {
      const ns = nsPidsOf(p);
      const last = ns?.[ns.length - 1];
      if (last !== undefined) this.outer.set(last, p);
      if (last === inner) return p;
      queue.push(...childrenOf(p));
    }
    return undefined;
  }

  /** The pid of outer pid `outer` in the new namespace (last NSpid entry). */
  innerOf(outer: number): number | undefined {
    const ns = nsPidsOf(outer);
    return ns && ns.length > 1 ? ns[ns.length - 1] : undefined;
  }
}
