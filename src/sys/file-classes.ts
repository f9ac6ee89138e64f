/**
 * Open file descriptions across the tree. Two fds are one open file exactly when
 * kcmp(KCMP_FILE) says 0; its other answers (1, 2) are a stable order of the kernel's
 * (obfuscated) file pointers, so the fds of one inode are sorted with kcmp as the
 * comparator and equal neighbours are one file: O(n log n) kcmp calls, not O(n²).
 * Fds of different inodes are never one file, so only same-ino fds are compared.
 */

export interface HeldPidfd {
  pid: number;
  fd: number;
  ino: bigint;
  /** f_flags without O_CLOEXEC. */
  flags: number;
}

/** kcmp(KCMP_FILE): 0 same file, 1 / 2 a stable order. Injected (native kcmpFile). */
export type FileCompare = (pid1: number, fd1: number, pid2: number, fd2: number) => 0 | 1 | 2;

/**
 * The class (open file) index of each entry of `held`, numbered 0, 1, … in order of
 * first appearance in `held`.
 */
export function openFileClasses(
  held: readonly Pick<HeldPidfd, 'pid' | 'fd' | 'ino'>[],
  cmp: FileCompare,
): number[] {
  const byIno = new Map<bigint, number[]>();
  held.forEach((h, i) => byIno.set(h.ino, [...(byIno.get(h.ino) ?? []), i]));
  const rep = held.map((_, i) => i); // representative entry of each entry's class
  // Each pair is asked once: the pass over sorted neighbours reuses what the sort learnt.
  const n = held.length;
  const known = new Map<number, number>();
  for (const members of byIno.values()) {
    const order = (a: number, b: number): number => {
      const seen = known.get(a * n + b);
      if (seen !== undefined) return seen;
      const r = cmp(held[a]!.pid, held[a]!.fd, held[b]!.pid, held[b]!.fd);
      const o = r === 0 ? 0 : r === 1 ? -1 : 1;
      known.set(a * n + b, o);
      known.set(b * n + a, -o);
      return o;
    };
    const sorted = [...members].sort(order);
    for (let k = 1; k < sorted.length; k++) {
      const prev = sorted[k - 1]!;
      const cur = sorted[k]!;
      if (order(prev, cur) === 0) rep[cur] = rep[prev]!;
    }
  }
  const classOf = new Map<number, number>();
  return held.map((_, i) => {
    const r = rep[i]!;
    if (!classOf.has(r)) classOf.set(r, classOf.size);
    return classOf.get(r)!;
  });
}
