/**
 * Tiny children (native/tiny.ts): the temporary process x and the zombie children are
 * made by clone3 without exec and run a few system calls. Checked from /proc and waitid:
 * each dies with exactly its wait status (every exit code 0–255, every fatal signal),
 * with its comm; x dies at once too and stays our zombie child, holding no fd, named
 * pcr-temp, a process of its own (not one of our threads), until finishTemp reaps it
 * with its exact status; when its parent is SIGKILLed first, the subreaper reaps it with
 * that status; the memory it read is reusable once it is gone.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import {
  deathFor,
  spawnZombie,
  startTemp,
  finishTemp,
  abortTemp,
  TEMP_COMM,
} from '../../src/sys/temp-process.js';
import {
  closeQuiet,
  pidfdOpen,
  prctl,
  PR_SET_CHILD_SUBREAPER,
  tinyRegionsInUse,
  tinyStartHex,
  waitPidfd,
  WEXITED,
  WNOHANG,
  WNOWAIT,
} from '../../native/index.js';
import { comm, exists, exitCodeField, parentOf, procState } from '../helpers/proc-view.js';
import { startNode, waitUntil } from '../helpers/holder.js';
import { canChoosePids, PID_RACE_ENV } from '../../src/sys/pid-choose.js';

const NON_FATAL = [17, 18, 19, 20, 21, 22, 23, 28];
const EXIT_STATUSES = Array.from({ length: 256 }, (_, code) => code << 8);
const SIGNAL_STATUSES = Array.from({ length: 64 }, (_, i) => i + 1).filter(
  (sig) => !NON_FATAL.includes(sig),
);

const statusLine = (pid: number, key: string): string => {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${key}:`));
  return line!.slice(key.length + 1).trim();
};

/**
 * Zombie `pid` (our child): waits until it died without reaping it, checks /proc, then
 * reaps it and returns the status waitid gave.
 */
function checkZombie(pid: number, status: number, name: string): number {
  const fd = pidfdOpen(pid);
  try {
    assert.equal(waitPidfd(fd, WEXITED | WNOWAIT)?.status, status, `waitid WNOWAIT of ${pid}`);
    assert.equal(procState(pid), 'Z', `${pid} is a zombie`);
    assert.equal(exitCodeField(pid), status, '/proc/P/stat field 52');
    assert.equal(comm(pid), name);
    assert.equal(parentOf(pid), process.pid);
    return waitPidfd(fd, WEXITED)!.status;
  } finally {
    closeQuiet(fd);
  }
}

test('zombies die with every exit code 0–255 and every fatal signal, with their comm', () => {
  for (const status of [...EXIT_STATUSES, ...SIGNAL_STATUSES]) {
    const name = `z-${status}`;
    const pid = spawnZombie(status, name);
    assert.equal(checkZombie(pid, status, name), status, `status ${status}`);
  }
  assert.equal(tinyRegionsInUse(), 0, 'every region released once its child is gone');
});

test('a zombie comm with a slash, dots or no name: set by prctl, not an exec path', () => {
  for (const [name, shown] of [
    ['a/b', 'a/b'],
    ['..', '..'],
    ['', ''],
  ] as const) {
    assert.equal(checkZombie(spawnZombie(5 << 8, name), 5 << 8, shown), 5 << 8);
  }
});

test('the core bit and statuses no process dies with are refused before any clone', () => {
  for (const bad of [11 | 0x80, 6 | 0x80, 0x137f, 17, 19, 28, 256 << 8, 65, -1]) {
    assert.throws(() => deathFor(bad), /PCR_ERR_UNSUPPORTED|wait status/, `status ${bad}`);
    assert.throws(() => startTemp(bad), /wait status/, `status ${bad}`);
  }
});

const SAMPLE = [0, 1 << 8, 127 << 8, 255 << 8, 1, 2, 6, 9, 11, 13, 15, 31, 32, 34, 64];

test('x is a zombie child at once, holding no fd, named pcr-temp, its status exact', async () => {
  const temps = SAMPLE.map((status) => startTemp(status));
  try {
    const ourThreads = readdirSync('/proc/self/task').map(Number);
    for (const x of temps) {
      await waitUntil(`x ${x.pid} is dead`, () => procState(x.pid) === 'Z');
      assert.equal(waitPidfd(x.pidfd, WEXITED | WNOWAIT)?.status, x.status, 'waitid WNOWAIT');
      assert.equal(exitCodeField(x.pid), x.status, '/proc/P/stat field 52');
      assert.deepEqual(readdirSync(`/proc/${x.pid}/fd`), [], `x ${x.pid}: no fd`);
      assert.equal(comm(x.pid), TEMP_COMM);
      assert.equal(parentOf(x.pid), process.pid, 'our child, not reaped');
      assert.equal(statusLine(x.pid, 'Tgid'), String(x.pid), 'its own thread group');
      assert.equal(ourThreads.includes(x.pid), false, 'not one of our threads');
    }
    assert.equal(tinyRegionsInUse(), 0, 'every region released once its x died');
    for (const x of temps) {
      const pid = x.pid;
      await finishTemp(x); // throws unless x died with exactly its status
      assert.equal(exists(pid), false, 'reaped');
      assert.equal(x.pidfd, -1, 'our pidfd of it closed');
    }
  } finally {
    temps.forEach(abortTemp);
  }
});

test('an x whose parent is SIGKILLed is reaped by the subreaper with its status', async (t) => {
  prctl(PR_SET_CHILD_SUBREAPER, 1); // orphans come to us: we reap x and see its status
  const dist = new URL('../../', import.meta.url).href;
  const dir = mkdtempSync(join(tmpdir(), 'pcr-tiny-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const out = join(dir, 'pids');
  const parent = startNode(
    t,
    `const { startTemp } = await import(${JSON.stringify(`${dist}src/sys/temp-process.js`)});
     const { writeFileSync } = await import('node:fs');
     const xs = [7 << 8, 15].map((s) => startTemp(s));
     writeFileSync(${JSON.stringify(out)}, xs.map((x) => x.pid).join(' '));
     setInterval(() => {}, 1e9);`,
  );
  let xs: number[] = [];
  await waitUntil('the parent started its x', () => {
    try {
      xs = readFileSync(out, 'utf8').split(' ').map(Number);
      return xs.length === 2;
    } catch {
      return false;
    }
  });
  // By pid is exact here: x is the parent's unreaped child, its pid cannot be reused.
  const fds = xs.map((pid) => pidfdOpen(pid));
  t.after(() => fds.forEach(closeQuiet));
  for (const pid of xs) {
    await waitUntil(`x ${pid} is dead, not reaped`, () => procState(pid) === 'Z');
    assert.equal(parentOf(pid), parent);
    assert.equal(comm(pid), TEMP_COMM);
    assert.equal(readdirSync(`/proc/${parent}/task`).map(Number).includes(pid), false);
  }
  process.kill(parent, 'SIGKILL');
  // Reparented to us (subreaper): waitid works once we are its parent.
  const statuses: number[] = [];
  for (const fd of fds) {
    let got: number | undefined;
    await waitUntil('x reaped by us', () => {
      try {
        got = waitPidfd(fd, WEXITED | WNOHANG)?.status;
        return got !== undefined;
      } catch {
        return false; // ECHILD until it is ours
      }
    });
    statuses.push(got!);
  }
  assert.deepEqual(statuses, [7 << 8, 15], 'each reaped with its recorded status');
});

test(
  'a zombie at a chosen pid (set_tid) wins a race for it on a retry',
  { skip: canChoosePids() ? false : 'needs CAP_CHECKPOINT_RESTORE' },
  () => {
    const pidMax = Number(readFileSync('/proc/sys/kernel/pid_max', 'utf8'));
    let pid = 0;
    for (let i = 0; i < 1000 && pid === 0; i++) {
      const p = pidMax - 2 - Math.floor(Math.random() * (pidMax / 4));
      if (!exists(p)) pid = p;
    }
    const lost: string[] = [];
    process.env[PID_RACE_ENV] = `${pid}:2`; // the first two clones at `pid` find it taken
    try {
      const got = spawnZombie(9, 'zed', {
        pid,
        what: `zombie ${pid}`,
        onRetry: (attempt, holder) => lost.push(`${attempt} ${holder}`),
      });
      assert.equal(got, pid);
      assert.deepEqual(lost, ['1 true', '2 true'], 'two lost races, each to the injected thief');
      assert.equal(checkZombie(pid, 9, 'zed'), 9);
    } finally {
      delete process.env[PID_RACE_ENV];
    }
  },
);

const hasGcc = ((): boolean => {
  try {
    execFileSync('gcc', ['--version'], { stdio: 'ignore' });
    execFileSync('objcopy', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

test(
  'the machine code is native/tiny.S assembled',
  { skip: hasGcc ? false : 'needs gcc and objcopy' },
  (t) => {
    const source = fileURLToPath(new URL('../../../native/tiny.S', import.meta.url));
    const dir = mkdtempSync(join(tmpdir(), 'pcr-tiny-asm-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    execFileSync('gcc', ['-c', source, '-o', join(dir, 'tiny.o')]);
    execFileSync('objcopy', [
      '-O',
      'binary',
      '-j',
      '.text',
      join(dir, 'tiny.o'),
      join(dir, 'tiny.bin'),
    ]);
    assert.equal(readFileSync(join(dir, 'tiny.bin')).toString('hex'), tinyStartHex());
  },
);
