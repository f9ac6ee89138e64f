/**
 * The completed trace of a real restore (issue 10, docs/trace.md): every temporary
 * process of a dead target group has a spawn and an exit event from the creator that made
 * it, with its pid and parent checked in /proc while it lives and the wait status the
 * image recorded; every SCM_RIGHTS message of the plan has a send and a receive event
 * with one id, and the receiver's fds are pidfds of the same open file as the sender's.
 * `--trace` prints all of it in time order.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readlinkSync } from 'node:fs';
import { restoreImage } from '../../src/restore/restore-image.js';
import { stderrTraceSink } from '../../src/restore/trace-sinks.js';
import { writeImage } from '../../src/image/store.js';
import { CLI } from '../fixtures/dump-helpers.js';
import { planRestore } from '../../src/plan/planner.js';
import type { PidMap } from '../../src/protocol/messages.js';
import type { TraceEvent, TraceProcess, TraceTransfer } from '../../src/protocol/trace.js';
import { kcmpFile } from '../../native/index.js';
import { exited, signaled, type TreeSpec } from '../../src/testing/spec.js';
import { buildAndDump, waitGone } from '../helpers/restore-run.js';
import { descendantsOf } from '../helpers/proc-view.js';

/**
 * root holds a live child, two dead targets (exit 7, SIGTERM) and sends one of them and
 * its pidfd of a to a over SCM_RIGHTS; a holds a dead target of its own (exit 3) and
 * shares root's pidfd of b; b is a plain leaf; z is a zombie child of root.
 */
const spec: TreeSpec = {
  root: {
    name: 'root',
    pidfds: [
      { fd: 3, target: { task: 'b' } },
      { fd: 4, target: { dead: { status: exited(7) } } },
      { fd: 5, target: { dead: { status: signaled(15) } } },
    ],
    children: [
      {
        name: 'a',
        pidfds: [
          { fd: 5, sameFileAs: { task: 'root', fd: 4 }, via: 'scm-rights' },
          { fd: 6, sameFileAs: { task: 'root', fd: 3 }, via: 'scm-rights' },
          { fd: 7, target: { dead: { status: exited(3) } } },
        ],
      },
      { name: 'b', pidfds: [{ fd: 3, target: { task: 'a' } }] },
      { name: 'z', zombie: { status: exited(5) } },
    ],
  },
};

/** Fields 3 (state) and 4 (ppid) of /proc/P/stat, or undefined when P is gone. */
function statOf(pid: number): { state: string; ppid: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { state: state!, ppid: Number(ppid) };
  } catch {
    return undefined;
  }
}

test('a real restore traces every temp process and both sides of every fd transfer', async (t) => {
  const { image, dir } = await buildAndDump(t, spec);
  const plan = planRestore(image);
  const events: TraceEvent[] = [];
  /** What /proc showed of each temp when the coordinator got its spawn event. */
  const seenAtSpawn = new Map<number, { state: string; ppid: number } | undefined>();
  const goneAtExit = new Map<number, boolean>();
  let pidMap: PidMap | undefined;
  /** At verification: each recv event's fd in the receiver, same file as the sender's? */
  const sameFile = new Map<string, boolean>();
  const procSeen = new Map<
    number,
    Partial<{ state: string; ppid: number }> & { restored: number }
  >();
  const before = new Set(descendantsOf(process.pid));
  const restoredOf = (dumped: number): number =>
    pidMap!.pids.find((p) => p.dumped === dumped)!.restored;

  const result = await restoreImage(image, {
    runDirParent: dir,
    trace: (e) => {
      events.push(e);
      const p = e.process;
      if (p?.role === 'temp' && p.action === 'spawn') {
        // The spawn event comes before its creator's sends of `dead`, and x (dead at
        // once, a zombie) is not reaped until `kill-temp`: it must be there now. (Not its cmdline: posix_spawn returns
        // while the child's exec may still be setting up its arguments.)
        seenAtSpawn.set(p.pid, statOf(p.pid));
      }
      if (p?.role === 'temp' && p.action === 'exit')
        goneAtExit.set(p.pid, !existsSync(`/proc/${p.pid}`));
    },
    onVerified: (r) => {
      pidMap = r.pidMap;
      // Workers and zombies as /proc shows them in the verified tree.
      for (const e of events) {
        const p = e.process;
        if (p?.action !== 'spawn' || (p.role !== 'worker' && p.role !== 'zombie')) continue;
        procSeen.set(p.pid, { ...statOf(p.pid), restored: restoredOf(p.task!) });
      }
      for (const e of events) {
        const x = e.transfer;
        if (x?.side !== 'recv') continue;
        const send = events.find((s) => s.transfer?.side === 'send' && s.transfer.id === x.id);
        const sender = plan.tasks.find((tp) => tp.pid === x.sender)!;
        x.fds.forEach((fd, i) => {
          const link = readlinkSync(`/proc/${restoredOf(x.receiver)}/fd/${fd}`);
          assert.equal(link, 'anon_inode:[pidfd]', `${x.id}: fd ${fd} of ${x.receiver}`);
          // The sender's fd, if it is in its final table (else it was closed in finalize).
          const sent = send?.transfer?.fds[i];
          if (sent !== undefined && sender.fds.some((f) => f.fd === sent))
            sameFile.set(
              `${x.id}/${i}`,
              kcmpFile(restoredOf(x.sender), sent, restoredOf(x.receiver), fd) === 0,
            );
        });
      }
    },
  });
  assert.equal(result.ok, true, JSON.stringify(result.differences));
  assert.ok(pidMap);
  const left = descendantsOf(process.pid).filter((p) => !before.has(p));
  assert.deepEqual(await waitGone(left), [], 'nothing of the restore is left');

  // One run, seq 0, 1, 2, … in emission order.
  assert.equal(new Set(events.map((e) => e.run)).size, 1);
  assert.deepEqual(
    events.map((e) => e.seq),
    events.map((_, i) => i),
  );

  // ---- workers and zombies: the pids and parents /proc showed at verification ----
  const spawned = events.filter((e) => e.process?.action === 'spawn');
  assert.equal(
    spawned.filter((e) => e.process!.role === 'worker' || e.process!.role === 'zombie').length,
    image.tasks.length,
    'one spawn per task',
  );
  for (const [pid, seen] of procSeen) {
    const p = spawned.find((e) => e.process!.pid === pid)!.process!;
    assert.equal(pid, seen.restored, `task ${p.task}: the pid map's pid`);
    assert.equal(seen.ppid, p.ppid, `task ${p.task}: /proc/${pid}/stat ppid`);
    assert.equal(seen.state === 'Z', p.role === 'zombie', `task ${p.task}: state ${seen.state}`);
  }

  // ---- temporary processes: one per dead group, made by its creator ----
  const temps = (action: TraceProcess['action']): TraceEvent[] =>
    events.filter((e) => e.process?.role === 'temp' && e.process.action === action);
  const spawns = temps('spawn');
  const exits = temps('exit');
  assert.equal(plan.deadGroups.length, 3, 'the spec has three dead targets');
  assert.deepEqual(
    spawns.map((e) => `${e.process!.creator}:${e.process!.ino}`).sort(),
    plan.deadGroups.map((g) => `${g.creator}:${g.ino}`).sort(),
    'one temp per dead group, spawned by its creator',
  );
  for (const g of plan.deadGroups) {
    const spawn = spawns.find((e) => e.process!.ino === g.ino)!;
    const exit = exits.filter((e) => e.process!.ino === g.ino);
    assert.equal(exit.length, 1, `one exit of the temp of ino ${g.ino}`);
    const sp = spawn.process!;
    const ex = exit[0]!.process!;
    const creatorPid = restoredOf(g.creator);
    // Attributed to the creator's machine and process.
    assert.equal(spawn.source, `task:${g.creator}`);
    assert.equal(spawn.pid, creatorPid);
    assert.equal(sp.ppid, creatorPid);
    assert.equal(ex.pid, sp.pid);
    assert.equal(ex.ppid, creatorPid);
    // What /proc showed: x there (a zombie, or not yet dead), not reaped, a child of the
    // creator.
    const seen = seenAtSpawn.get(sp.pid);
    assert.ok(seen, `temp ${sp.pid} was in /proc at its spawn event`);
    assert.equal(seen.ppid, creatorPid, `temp ${sp.pid}: /proc/${sp.pid}/stat ppid`);
    assert.notEqual(seen.state, 'X', `temp ${sp.pid}: state ${seen.state}`);
    assert.equal(goneAtExit.get(sp.pid), true, `temp ${sp.pid} was reaped at its exit event`);
    // Died with the status the image recorded for this target.
    const target = image.targets.find((x) => String(x.ino) === g.ino)!;
    assert.equal(ex.waitStatus, target.exitStatus, `temp of ino ${g.ino}`);
    assert.ok(sp.startTime! <= ex.exitTime!, 'started before it exited');
    assert.ok(spawn.time <= exit[0]!.time);
    // The creator reaped it in kill-temp.
    assert.equal(exit[0]!.from, 'kill-temp');
  }
  // The statuses themselves, from the spec: exit 7, SIGTERM, exit 3.
  assert.deepEqual(exits.map((e) => e.process!.waitStatus).sort(), [7 << 8, 15, 3 << 8].sort());

  // ---- zombies: spawned (seen by the coordinator), reaped by their parent at teardown ----
  const zombieTasks = image.tasks.filter((task) => task.state === 'zombie');
  assert.equal(zombieTasks.length, 1);
  for (const z of zombieTasks) {
    const zs = events.filter((e) => e.process?.role === 'zombie' && e.process.task === z.pid);
    assert.deepEqual(
      zs.map((e) => e.process!.action),
      ['spawn', 'exit'],
    );
    const [spawn, exit] = zs.map((e) => e.process!);
    assert.equal(spawn!.pid, restoredOf(z.pid));
    assert.equal(exit!.pid, spawn!.pid);
    assert.equal(exit!.ppid, restoredOf(z.ppid), 'reaped by its parent worker');
    assert.equal(exit!.waitStatus, z.exitStatus, 'the status the image recorded');
    // A zombie runs no machine: both events belong to its parent's.
    assert.deepEqual(
      zs.map((e) => e.source),
      [`task:${z.ppid}`, `task:${z.ppid}`],
    );
    assert.ok(!events.some((e) => e.source === `task:${z.pid}`), 'no lane of its own');
  }

  // ---- fd transfers: one send and one receive per planned message, one id ----
  const planned = plan.tasks.flatMap((tp) =>
    (['open-alive', 'dead'] as const).flatMap((phase) =>
      tp.steps[phase].sends.map((s) => ({ phase, sender: tp.pid, ...s })),
    ),
  );
  assert.ok(planned.length >= 2, 'the spec sends in both open phases');
  const sends = events.filter((e) => e.transfer?.side === 'send');
  const recvs = events.filter((e) => e.transfer?.side === 'recv');
  assert.equal(sends.length, planned.length);
  assert.equal(recvs.length, planned.length);
  assert.equal(new Set(sends.map((e) => e.transfer!.id)).size, sends.length, 'ids are unique');
  for (const p of planned) {
    const send = sends.filter(
      (e) =>
        e.transfer!.sender === p.sender &&
        e.transfer!.receiver === p.to &&
        e.details.phase === p.phase,
    );
    assert.equal(send.length, 1, `${p.phase}: ${p.sender} -> ${p.to}`);
    const s: TraceTransfer = send[0]!.transfer!;
    assert.deepEqual(s.files, p.fileIds);
    assert.equal(send[0]!.source, `task:${p.sender}`);
    assert.equal(send[0]!.from, 'sending');
    const recv = recvs.filter((e) => e.transfer!.id === s.id);
    assert.equal(recv.length, 1, `the receive of message ${s.id}`);
    const r = recv[0]!;
    assert.equal(r.source, `task:${p.to}`);
    assert.equal(r.pid, restoredOf(p.to));
    assert.equal(r.from, 'wait-for-fd');
    assert.deepEqual(
      { sender: r.transfer!.sender, receiver: r.transfer!.receiver, files: r.transfer!.files },
      { sender: p.sender, receiver: p.to, files: p.fileIds },
    );
    // The receiver's fds are where its plan installs each file.
    const step = plan.tasks
      .find((tp) => tp.pid === p.to)!
      .steps[p.phase].receives.find((x) => x.from === p.sender)!;
    assert.deepEqual(
      r.transfer!.fds,
      step.files.map((f) => f.installAt[0]!.fd),
    );
    assert.ok(s.fds.every((fd) => fd >= 0));
  }
  // Checked in the restored tree at verification: the same open file on both sides.
  assert.ok(sameFile.size > 0, 'at least one sent fd stays in its sender');
  for (const [k, same] of sameFile) assert.ok(same, `kcmp: ${k}`);
});

/** "+   12.3 ms" of a `--trace` line. */
const lineTime = (l: string): number => Number(/^\+\s*(-?[0-9.]+) ms/.exec(l)![1]);

test('--trace lines of a real restore come in time order, temp and fd notes included', async (t) => {
  const { image, dir } = await buildAndDump(t, spec);
  // The library's sink with a hold far above any frame's delay on a loaded machine.
  const lines: string[] = [];
  const sink = stderrTraceSink((l) => lines.push(l), { holdMs: 2000 });
  const events: TraceEvent[] = [];
  const result = await restoreImage(image, {
    runDirParent: dir,
    trace: (e) => {
      events.push(e);
      sink(e);
    },
  });
  sink.flush();
  assert.equal(result.ok, true);
  assert.equal(lines.length, events.length, 'one line per event');
  const times = lines.map(lineTime);
  assert.deepEqual(
    times,
    [...times].sort((a, b) => a - b),
    'time order',
  );
  // How often an event arrived before an earlier one (workers' events come late).
  const late = events.filter((e, i) => events.slice(0, i).some((p) => p.time > e.time)).length;
  t.diagnostic(`${late} of ${events.length} events arrived after a later one`);
  const text = lines.join('');
  assert.equal((text.match(/\* spawn temp pid=\d+ ppid=\d+ ino=\d+ creator=\d+/g) ?? []).length, 3);
  assert.deepEqual(
    [...text.matchAll(/\* exit temp .*waitStatus=(\d+)/g)].map((m) => Number(m[1])).sort(),
    [7 << 8, 15, 3 << 8].sort(),
  );
  const ids = (side: string): string[] =>
    [...text.matchAll(new RegExp(`\\* fds ${side} id=([0-9a-f]+) `, 'g'))].map((m) => m[1]!).sort();
  assert.ok(ids('send').length >= 2);
  assert.deepEqual(ids('recv'), ids('send'), 'each message id on both sides');
  // A send line comes before the receive line of the same message.
  for (const id of ids('send'))
    assert.ok(text.indexOf(`fds send id=${id}`) < text.indexOf(`fds recv id=${id}`), id);
});

test('restore --trace (CLI): the notes are on stderr, every line before the command ends', async (t) => {
  const { image, dir } = await buildAndDump(t, spec);
  writeImage(dir, image);
  const r = spawnSync(process.execPath, [CLI, 'restore', '-D', dir, '--trace'], {
    encoding: 'utf8',
    timeout: 120_000,
  });
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stderr.split('\n').filter((l) => l !== '');
  assert.ok(
    lines.every((l) => /^\+\s*-?[0-9.]+ ms  /.test(l)),
    r.stderr,
  );
  assert.equal((r.stderr.match(/\* spawn temp /g) ?? []).length, 3);
  assert.equal((r.stderr.match(/\* exit temp /g) ?? []).length, 3);
  const send = r.stderr.match(/\* fds send /g) ?? [];
  assert.ok(send.length >= 2);
  assert.equal((r.stderr.match(/\* fds recv /g) ?? []).length, send.length);
  // The last event of a clean run: the coordinator's done (flushed before exit).
  assert.match(lines.filter((l) => l.includes('coordinator ')).pop()!, /-> done/);
});

test('a restore that fails in kill-temp: its temps are reaped at teardown with their status', async (t) => {
  const { image, dir } = await buildAndDump(t, spec);
  const plan = planRestore(image);
  // root creates two of the three groups; it fails before reaping them.
  const creator = image.rootPid;
  const mine = plan.deadGroups.filter((g) => g.creator === creator);
  assert.ok(mine.length > 0, 'root is a creator');
  const events: TraceEvent[] = [];
  const before = new Set(descendantsOf(process.pid));
  const err = await restoreImage(image, {
    runDirParent: dir,
    fault: `fail@${creator}:kill-temp`,
    workerStderr: null,
    trace: (e) => events.push(e),
  }).then(
    () => assert.fail('the restore succeeded'),
    (e: unknown) => e as Error,
  );
  assert.match(err.message, /kill-temp/);
  const left = descendantsOf(process.pid).filter((p) => !before.has(p));
  assert.deepEqual(await waitGone(left), [], 'nothing of the restore is left');
  for (const g of plan.deadGroups) {
    const temp = events.filter((e) => e.process?.role === 'temp' && e.process.ino === g.ino);
    assert.deepEqual(
      temp.map((e) => e.process!.action),
      ['spawn', 'exit'],
      `ino ${g.ino}: spawned and reaped once`,
    );
    const exit = temp[1]!;
    const recorded = image.targets.find((x) => String(x.ino) === g.ino)!.exitStatus;
    // x died at once with its recorded status: the teardown only reaps it (no SIGKILL),
    // and another creator may have reaped its own in kill-temp or at its teardown.
    assert.equal(exit.process!.waitStatus, recorded, `ino ${g.ino}`);
    if (g.creator === creator) assert.equal(exit.from, 'failed', 'reaped by the teardown');
  }
});
