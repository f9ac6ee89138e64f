/** The pure parts of dump: the walk, open-file classes from kcmp, target classification. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PcrError } from '../../src/errors.js';
import {
  classifyTarget,
  openFileClasses,
  walkTree,
  type TargetProbes,
} from '../../src/dump/index.js';
import type { HeldPidfd } from '../../src/dump/index.js';
import type { ProcPidfd, Stat } from '../../src/procfs/index.js';

const stat = (pid: number, ppid: number, state = 'S'): Stat => ({
  pid,
  comm: 'x',
  state,
  ppid,
  pgrp: 0,
  session: 0,
  flags: 0,
  numThreads: 1,
  exitCode: 0,
});

test('walkTree is pre-order, skips the children of zombies and tolerates repeats', () => {
  const procs: Record<number, [Stat, number[]]> = {
    10: [stat(10, 1), [12, 11]],
    11: [stat(11, 10), [13]],
    12: [stat(12, 10, 'Z'), [99]],
    13: [stat(13, 11), [11]],
  };
  const tasks = walkTree(10, {
    readStat: (p) => procs[p]![0],
    readChildren: (p) => [...procs[p]![1]].sort((a, b) => a - b),
  });
  assert.deepEqual(
    tasks.map((t) => [t.pid, t.ppid, t.procState]),
    [
      [10, 1, 'S'],
      [11, 10, 'S'],
      [13, 11, 'S'],
      [12, 10, 'Z'],
    ],
  );
});

test('walkTree: a missing root is NO_SUCH_PROCESS, a vanished child asks for a new walk', () => {
  const gone = (pid: number) => {
    throw new PcrError('PCR_ERR_NO_SUCH_PROCESS', `no such process: ${pid}`);
  };
  assert.throws(
    () => walkTree(5, { readStat: gone, readChildren: () => [] }),
    (e: unknown) => e instanceof PcrError && e.code === 'PCR_ERR_NO_SUCH_PROCESS',
  );
  assert.throws(
    () =>
      walkTree(5, {
        readStat: (p) => (p === 5 ? stat(5, 1) : gone(p)),
        readChildren: () => [6],
      }),
    /task 6 vanished during the walk/,
  );
});

/** A fake kcmp: each fd is given the address of its file; kcmp orders addresses. */
function fakeKcmp(files: Record<string, number>) {
  let calls = 0;
  const cmp = (p1: number, f1: number, p2: number, f2: number): 0 | 1 | 2 => {
    calls++;
    const a = files[`${p1}:${f1}`]!;
    const b = files[`${p2}:${f2}`]!;
    return a === b ? 0 : a < b ? 1 : 2;
  };
  return { cmp, calls: () => calls };
}

const held = (pid: number, fd: number, ino: bigint): HeldPidfd => ({ pid, fd, ino, flags: 2 });

test('openFileClasses groups fds by kcmp file, numbered by first appearance', () => {
  const list = [
    held(1, 3, 100n),
    held(1, 4, 100n),
    held(2, 3, 100n),
    held(2, 5, 200n),
    held(3, 3, 100n),
  ];
  const { cmp } = fakeKcmp({ '1:3': 7, '1:4': 3, '2:3': 7, '2:5': 7, '3:3': 3 });
  // 2:5 has the "same address" as 1:3 but another ino: never the same file.
  assert.deepEqual(openFileClasses(list, cmp), [0, 1, 0, 2, 1]);
});

test('openFileClasses compares only within one ino and sorts (n log n, not n²)', () => {
  const n = 200;
  const list = Array.from({ length: n }, (_, i) => held(1000 + i, 3, 1n));
  const files = Object.fromEntries(list.map((h, i) => [`${h.pid}:${h.fd}`, i % 7]));
  const k = fakeKcmp(files);
  const classes = openFileClasses(list, k.cmp);
  assert.deepEqual(
    classes,
    list.map((_, i) => i % 7),
  );
  assert.ok(k.calls() < (n * (n - 1)) / 2 / 4, `${k.calls()} kcmp calls`);
});

const pidfd = (fd: number, pid: number, ino: bigint): ProcPidfd => ({
  fd,
  flags: 2,
  cloexec: true,
  ino,
  pid,
  nsPids: pid > 0 ? [pid] : [-1],
});

const facts = {
  taskIno: new Map([
    [10, 1000n],
    [11, 1100n],
  ]),
  zombies: new Set([11]),
  threadOwner: new Map([[15, 10]]),
};

const probes = (over: Partial<TargetProbes> = {}): TargetProbes => ({
  dead: () => ({ exitStatus: 768, cgroupId: 5n }),
  external: (pid) => ({ comm: 'sleep', zombie: false, tgid: pid }),
  ...over,
});

test('classifyTarget: dead, in-tree alive and zombie, thread, external, external thread', () => {
  assert.deepEqual(classifyTarget(10, pidfd(3, -1, 7n), facts, probes()), {
    ino: 7n,
    kind: 'dead',
    pid: -1,
    nsPids: [],
    taskPid: 0,
    tid: 0,
    exitStatus: 768,
    exitCgroupId: 5n,
    tgid: 0,
    zombie: false,
    comm: '',
  });
  const noExit = classifyTarget(
    10,
    pidfd(3, -1, 7n),
    facts,
    probes({ dead: () => ({ cgroupId: 0n }) }),
  );
  assert.equal('exitStatus' in noExit, false);
  assert.equal(classifyTarget(11, pidfd(3, 10, 1000n), facts, probes()).kind, 'in-tree-alive');
  const z = classifyTarget(10, pidfd(4, 11, 1100n), facts, probes());
  assert.deepEqual([z.kind, z.taskPid, z.pid], ['in-tree-zombie', 11, 11]);
  const th = classifyTarget(10, pidfd(5, 15, 1500n), facts, probes());
  assert.deepEqual([th.kind, th.taskPid, th.tid, th.pid], ['thread', 10, 15, 15]);
  const ext = classifyTarget(10, pidfd(6, 40, 4000n), facts, probes());
  assert.deepEqual(
    [ext.kind, ext.pid, ext.tid, ext.tgid, ext.comm],
    ['external', 40, 0, 0, 'sleep'],
  );
  const extThread = classifyTarget(
    10,
    pidfd(7, 41, 4100n),
    facts,
    probes({ external: () => ({ comm: 'w', zombie: true, tgid: 40 }) }),
  );
  assert.deepEqual(
    [extThread.kind, extThread.tid, extThread.tgid, extThread.zombie],
    ['external', 41, 40, true],
  );
});

test('classifyTarget refuses an invisible target and a task pid with a foreign ino', () => {
  assert.throws(
    () => classifyTarget(10, pidfd(3, 0, 9n), facts, probes()),
    (e: unknown) =>
      e instanceof PcrError && e.code === 'PCR_ERR_UNSUPPORTED' && /task 10 fd 3/.test(e.message),
  );
  assert.throws(() => classifyTarget(10, pidfd(3, 11, 9n), facts, probes()), /is not its ino 1100/);
});
