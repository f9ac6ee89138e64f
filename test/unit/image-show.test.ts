import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatImage, imageToJson } from '../../src/image/show.js';
import { decodeEndStatus, flagNames } from '../../src/image/describe.js';
import { sampleImage } from '../fixtures/image-sample.js';

test('flag words: access mode, THREAD, NONBLOCK, LARGEFILE, CLOEXEC, unknown bits', () => {
  assert.deepEqual(flagNames(0o2), ['RDWR']);
  assert.deepEqual(flagNames(0o0), ['RDONLY']);
  assert.deepEqual(flagNames(0o3), ['ACCMODE3']);
  assert.deepEqual(flagNames(0o2004202), ['RDWR', 'THREAD', 'NONBLOCK', 'CLOEXEC']);
  assert.deepEqual(flagNames(0o100001), ['WRONLY', 'LARGEFILE']);
  assert.deepEqual(flagNames(0o42), ['RDWR', '0o40']);
  assert.deepEqual(flagNames(0x80000002), ['RDWR', '0o20000000000']);
});

test('wait status words decode to exits and signals', () => {
  assert.equal(decodeEndStatus(7 << 8).text, 'exited 7');
  assert.equal(decodeEndStatus(0).text, 'exited 0');
  assert.deepEqual(decodeEndStatus(15), {
    text: 'killed by SIGTERM',
    code: null,
    signal: 15,
    signalName: 'SIGTERM',
    coreDumped: false,
  });
  assert.equal(decodeEndStatus(0x8b).text, 'killed by SIGSEGV (core dumped)');
  assert.equal(decodeEndStatus(9).text, 'killed by SIGKILL');
});

test('formatImage shows host, the tree by parentage, pidfds and sharing', () => {
  const text = formatImage(sampleImage());
  const lines = text.split('\n');
  assert.ok(
    text.includes('host testhost, kernel 6.18.0, boot 4f2a0c3e-8f0b-4c47-9d1e-2b7c5a9e6d10'),
  );
  assert.ok(text.includes('dumped 2026-01-01T00:00:00.123Z, frozen by ptrace-seize'));
  // The tree: each task indented by its depth, children after their parent.
  const taskLines = lines.filter((l) => /^\s*\d+ \S+ \[/.test(l));
  assert.deepEqual(
    taskLines.map((l) => l.replace(/ \[.*/, '')),
    ['100 root', '  200 child', '    300 zombie', '  400 stopped'],
  );
  assert.ok(lines.includes('100 root [running S], threads 100 101'));
  assert.ok(lines.includes('    300 zombie [zombie Z], exited 3'));
  const fd = (s: string) => lines.find((l) => l.trimStart().startsWith(s)) ?? '';
  assert.match(fd('fd 4    RDWR CLOEXEC'), /file 1, ino 5000: process 200 \(child\)$/);
  assert.match(fd('fd 5'), /RDWR THREAD CLOEXEC +file 2, ino 5001: thread 101 of 100 \(root\)$/);
  assert.match(fd('fd 6'), /ino 1152921504606859321: dead, exited 7$/);
  assert.match(fd('fd 9'), /zombie 300 \(zombie\), exited 3$/);
  assert.match(
    text,
    /fd 7 +RDWR LARGEFILE CLOEXEC file 5, ino 9007199254740993: dead, status unknown/,
  );
  assert.match(text, /RDWR THREAD +file 8, ino 5004: external thread 555 of 554 \(worker\)/);
  assert.match(text, /ACCMODE3 CLOEXEC +file 9, ino 5005: external zombie 600 \(gone\)/);
  assert.ok(lines.includes('  file 1 (ino 5000, RDWR): 100:3, 100:4, 200:3'));
  assert.ok(lines.includes('  ino 5000 (process 200 (child)): files 1, 4'));
});

test('a signal death shows the signal name', () => {
  const image = sampleImage();
  image.targets[2]!.exitStatus = 15;
  assert.match(formatImage(image), /fd 6 .*dead, killed by SIGTERM$/m);
});

test('imageToJson: decimal-string inos, flags with names, null for absent fields', () => {
  const json = imageToJson(sampleImage());
  const round = JSON.parse(JSON.stringify(json));
  assert.deepStrictEqual(round, json, 'plain JSON, no bigint');
  assert.equal(json.jsonVersion, 1);
  assert.equal(json.host.dumpTime, '2026-01-01T00:00:00.123Z');
  assert.deepEqual(
    json.tasks.map((t) => [t.pid, t.depth]),
    [
      [100, 0],
      [200, 1],
      [300, 2],
      [400, 1],
    ],
  );
  assert.deepEqual(json.tasks[0]!.fds[1], {
    fd: 4,
    fileId: 1,
    cloexec: true,
    flags: 0o2000002,
    flagNames: ['RDWR', 'CLOEXEC'],
    ino: '5000',
  });
  assert.deepEqual(json.files[0], {
    id: 1,
    flags: 2,
    flagNames: ['RDWR'],
    ino: '5000',
    holders: [
      { pid: 100, fd: 3 },
      { pid: 100, fd: 4 },
      { pid: 200, fd: 3 },
    ],
  });
  const dead = json.targets[2]!;
  assert.equal(dead.ino, '1152921504606859321');
  assert.equal(dead.exitCgroupId, String((1n << 62n) + 7n));
  assert.equal(dead.exitStatus, 1792);
  assert.equal(dead.exit?.text, 'exited 7');
  assert.equal(dead.exit?.code, 7);
  assert.equal(json.targets[3]!.exitStatus, null);
  assert.equal(json.targets[3]!.exit, null);
  assert.equal(json.targets[3]!.ino, '9007199254740993');
  assert.deepEqual(json.targets[0]!.fileIds, [1, 4]);
  assert.equal(json.tasks[2]!.exit?.text, 'exited 3');
  assert.equal(json.tasks[0]!.exitStatus, null);
});

test('the JSON form has exactly the documented keys', () => {
  const json = imageToJson(sampleImage());
  const keys = (o: object) => Object.keys(o).sort();
  assert.deepEqual(keys(json), [
    'files',
    'formatVersion',
    'host',
    'jsonVersion',
    'rootPid',
    'targets',
    'tasks',
  ]);
  assert.deepEqual(keys(json.host), [
    'bootId',
    'dumpTime',
    'dumpTimeMs',
    'freezeMethod',
    'hostname',
    'kernelRelease',
    'toolVersion',
  ]);
  assert.deepEqual(keys(json.tasks[0]!), [
    'argv',
    'comm',
    'depth',
    'exit',
    'exitStatus',
    'fds',
    'nsPids',
    'pid',
    'ppid',
    'procState',
    'state',
    'tgid',
    'tids',
  ]);
  assert.deepEqual(keys(json.tasks[0]!.fds[0]!), [
    'cloexec',
    'fd',
    'fileId',
    'flagNames',
    'flags',
    'ino',
  ]);
  assert.deepEqual(keys(json.files[0]!), ['flagNames', 'flags', 'holders', 'id', 'ino']);
  assert.deepEqual(keys(json.targets[0]!), [
    'comm',
    'exit',
    'exitCgroupId',
    'exitStatus',
    'fileIds',
    'ino',
    'kind',
    'nsPids',
    'pid',
    'taskPid',
    'tgid',
    'tid',
    'zombie',
  ]);
  assert.deepEqual(keys(json.targets[2]!.exit!), [
    'code',
    'coreDumped',
    'signal',
    'signalName',
    'text',
  ]);
});

test('a hostile comm or host name cannot forge lines or terminal sequences', () => {
  const img = sampleImage();
  img.tasks[0]!.comm = 'evil\nfd 9 \x1b[2J\\';
  img.host.hostname = 'h\r\x9b';
  const text = formatImage(img);
  assert.ok(text.includes('evil\\x0afd 9 \\x1b[2J\\x5c'), text);
  assert.ok(text.includes('host h\\x0d\\x9b,'), text);
  assert.doesNotMatch(text, /[\x00-\x09\x0b-\x1f\x7f-\x9f]/);
  assert.equal(text.split('\n').length, formatImage(sampleImage()).split('\n').length);
});
