import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  isPidfdLink,
  parseCmdline,
  parseFdinfo,
  parsePidList,
  parseStat,
  parseStatus,
  splitCloexec,
} from '../../src/procfs/parse.js';

test('parseFdinfo reads octal flags, a 64-bit ino and the target pids', () => {
  const info = parseFdinfo(
    'pos:\t0\nflags:\t02004202\nmnt_id:\t4\nino:\t18446744073709551000\nPid:\t1913\nNSpid:\t1913\t7\n',
  );
  assert.equal(info.flags, 0o2004202);
  assert.equal(info.ino, 18446744073709551000n);
  assert.equal(info.pid, 1913);
  assert.deepEqual(info.nsPids, [1913, 7]);
  assert.equal(info.mntId, 4);
});

test('parseFdinfo tolerates unknown lines and a reaped target', () => {
  const info = parseFdinfo(
    'pos:\t0\nflags:\t02000002\nmnt_id:\t4\nino:\t77\nPid:\t-1\nNSpid:\t-1\nfuture_field:\tx y\n',
  );
  assert.equal(info.pid, -1);
  assert.deepEqual(info.nsPids, [-1]);
});

test('parseFdinfo of a non-pidfd has no Pid', () => {
  const info = parseFdinfo('pos:\t12\nflags:\t0100000\nmnt_id:\t30\nino:\t5\n');
  assert.equal(info.pid, undefined);
  assert.equal(info.pos, 12);
});

test('parseFdinfo refuses text without flags or ino', () => {
  assert.throws(() => parseFdinfo('pos:\t0\n'), /no 'flags:' line/);
});

test('isPidfdLink recognises only the pidfd anon inode', () => {
  assert.equal(isPidfdLink('anon_inode:[pidfd]'), true);
  assert.equal(isPidfdLink('anon_inode:[eventfd]'), false);
  assert.equal(isPidfdLink('/dev/null'), false);
});

test('splitCloexec separates the per-fd bit from the file flags', () => {
  assert.deepEqual(splitCloexec(0o2004202), { flags: 0o4202, cloexec: true });
  assert.deepEqual(splitCloexec(0o2), { flags: 0o2, cloexec: false });
});

const zombieStat =
  '3995 (a) b) (c) Z 3954 3952 2874 0 -1 4227148 231 0 0 0 0 0 0 0 20 0 1 0 74193 0 0 ' +
  '18446744073709551615 0 0 0 0 0 0 0 16781312 2 1 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 1792\n';

test('parseStat takes comm up to the last parenthesis', () => {
  const st = parseStat(zombieStat);
  assert.equal(st.pid, 3995);
  assert.equal(st.comm, 'a) b) (c');
  assert.equal(st.state, 'Z');
  assert.equal(st.ppid, 3954);
  assert.equal(st.numThreads, 1);
  assert.equal(st.flags, 4227148);
  assert.equal(st.exitCode, 1792);
});

test('parseStat of a comm with spaces and a running task', () => {
  const st = parseStat(
    '12 (my prog ) S 1 12 12 0 -1 0 0 0 0 0 0 0 0 0 20 0 3 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 ' +
      '0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n',
  );
  assert.equal(st.comm, 'my prog ');
  assert.equal(st.state, 'S');
  assert.equal(st.numThreads, 3);
  assert.equal(st.exitCode, 0);
});

test('parseStatus reads ids, the tracer and the namespace chains', () => {
  const st = parseStatus(
    'Name:\tnode\nState:\tS (sleeping)\nTgid:\t40\nNgid:\t0\nPid:\t41\nPPid:\t1\n' +
      'TracerPid:\t9\nUid:\t0\t0\t0\t0\nNStgid:\t40\t2\nNSpid:\t41\t3\nKthread:\t0\n',
  );
  assert.deepEqual(st, {
    name: 'node',
    state: 'S',
    tgid: 40,
    pid: 41,
    ppid: 1,
    tracerPid: 9,
    nsPids: [41, 3],
    nsTgids: [40, 2],
  });
});

test('parsePidList and parseCmdline handle empty and trailing separators', () => {
  assert.deepEqual(parsePidList(''), []);
  assert.deepEqual(parsePidList('5 17 '), [5, 17]);
  assert.deepEqual(parseCmdline(''), []);
  assert.deepEqual(parseCmdline('node\0a b\0\0'), ['node', 'a b', '']);
});
