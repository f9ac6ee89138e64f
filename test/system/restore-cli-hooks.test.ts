/**
 * `restore --action-script PATH` and `--status-fd N` on real trees: the scripts run at
 * each hook with criu's variables (what they saw of /proc is checked), a failing or
 * hanging script stops the restore by name and leaves nothing, bad scripts and fds are
 * refused before anything starts; the status byte comes once the held tree is ready.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, closeSync, openSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { writeImage } from '../../src/image/store.js';
import { alive } from '../fixtures/scenarios.js';
import { CLI, cli } from '../fixtures/dump-helpers.js';
import { buildAndDump, waitGone } from '../helpers/restore-run.js';
import { descendantsOf, exists } from '../helpers/proc-view.js';

/** A shell script at `path` (mode 0755). */
function script(path: string, body: string): string {
  writeFileSync(path, `#!/bin/sh\n${body}\n`);
  chmodSync(path, 0o755);
  return path;
}

/** Runs the CLI to its end (async: the test's own tree keeps running meanwhile). */
async function run(args: string[], env: NodeJS.ProcessEnv = {}) {
  const child = spawn(process.execPath, [CLI, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const [status] = (await once(child, 'exit')) as [number | null];
  return { status, stdout, stderr, pid: child.pid! };
}

test('--action-script runs every script at every hook with criu-like variables', async (t) => {
  const { image, dir } = await buildAndDump(t, alive);
  writeImage(dir, image);
  const log = join(dir, 'log');
  // What a host's script sees: the action, the pids, the pid map file, the root's pidfds.
  const body = (tag: string) =>
    `n=$(ls -l /proc/$PIDFD_CR_ROOT_PID/fd | grep -c 'anon_inode:\\[pidfd\\]')
echo "${tag} $CRTOOLS_SCRIPT_ACTION $PIDFD_CR_HOOK $PIDFD_CR_ROOT_PID $CRTOOLS_INIT_PID $PIDFD_CR_IMAGE_DIR $n $(cat $PIDFD_CR_PID_MAP)" >> ${log}`;
  const a = script(join(dir, 'a.sh'), body('a'));
  const b = script(join(dir, 'b.sh'), body('b'));
  const mapPath = join(dir, 'pids.json');
  const r = await run([
    'restore',
    '-D',
    dir,
    '--action-script',
    a,
    '--action-script',
    b,
    '--pid-map',
    mapPath,
  ]);
  assert.equal(r.status, 0, r.stderr);
  const map = JSON.parse(readFileSync(mapPath, 'utf8')) as Record<string, number>;
  const root = map[String(image.rootPid)]!;
  const rootFds = image.tasks.find((x) => x.pid === image.rootPid)!.fds.length;
  assert.ok(rootFds > 0);
  const lines = readFileSync(log, 'utf8').trimEnd().split('\n');
  const actions = [
    ['post-setup-namespaces', 'treeBuilt', 0],
    ['post-restore', 'verified', rootFds],
    ['pre-resume', 'beforeHandoff', rootFds],
    ['pre-teardown', 'beforeTeardown', rootFds],
  ] as const;
  assert.deepEqual(
    lines,
    actions.flatMap(([action, hook, n]) =>
      ['a', 'b'].map(
        (tag) => `${tag} ${action} ${hook} ${root} ${root} ${dir} ${n} ${JSON.stringify(map)}`,
      ),
    ),
  );
  assert.deepEqual(await waitGone(Object.values(map)), []);
});

test('a script that exits non-zero stops the restore naming it and its status; nothing left', async (t) => {
  const { image, dir } = await buildAndDump(t, alive);
  writeImage(dir, image);
  const seen = join(dir, 'seen.json');
  const bad = script(
    join(dir, 'bad.sh'),
    `cp "$PIDFD_CR_PID_MAP" ${seen}; [ "$CRTOOLS_SCRIPT_ACTION" = post-restore ] && exit 3; exit 0`,
  );
  // The run directory (with the pid-map files of the scripts) goes in `dir` too.
  const r = await run(['restore', '-D', dir, '--action-script', bad], { TMPDIR: dir });
  assert.equal(r.status, 23, r.stderr);
  assert.equal(
    r.stderr,
    `pidfd-cr: restore aborted in phase verify: hook verified aborted the restore: action script ${bad} (post-restore) exited with status 3\n`,
  );
  const pids = Object.values(JSON.parse(readFileSync(seen, 'utf8')) as Record<string, number>);
  assert.equal(pids.length, image.tasks.length);
  assert.deepEqual(await waitGone(pids), [], 'the restored tree is gone');
  assert.deepEqual(readdirSync(dir).sort(), ['bad.sh', 'pidfd-cr.img', 'seen.json']);
});

test('a script that hangs is bounded by --timeout and killed', async (t) => {
  const { image, dir } = await buildAndDump(t, alive);
  writeImage(dir, image);
  const pidFile = join(dir, 'script.pid');
  const hang = script(join(dir, 'hang.sh'), `echo $$ > ${pidFile}; exec sleep 1000`);
  const r = await run(['restore', '-D', dir, '--timeout', '2', '--action-script', hang]);
  assert.equal(r.status, 11, r.stderr);
  assert.equal(
    r.stderr,
    'pidfd-cr: restore aborted in phase spawn: hook treeBuilt did not finish within 2000 ms\n',
  );
  const pid = Number(readFileSync(pidFile, 'utf8'));
  assert.deepEqual(await waitGone([pid]), [], 'the script was killed');
});

test('missing, non-executable or empty scripts are refused before anything starts', async (t) => {
  const { image, dir } = await buildAndDump(t, alive);
  writeImage(dir, image);
  const notExec = join(dir, 'plain.sh');
  writeFileSync(notExec, '#!/bin/sh\n');
  const cases: Array<[string, RegExp]> = [
    [
      join(dir, 'nope.sh'),
      /^pidfd-cr: restore: --action-script .*nope\.sh does not exist \(ENOENT\)$/,
    ],
    [notExec, /^pidfd-cr: restore: --action-script .*plain\.sh is not executable \(EACCES\)$/],
    [dir, /^pidfd-cr: restore: --action-script .* is not a regular file$/],
    ['', /^pidfd-cr: restore: --action-script needs a file name, got ''$/],
  ];
  for (const [path, message] of cases) {
    const r = cli(['restore', '-D', dir, '--action-script', path]);
    assert.equal(r.status, 2, `${path}: ${r.stderr}`);
    assert.equal(r.stdout, '', 'nothing restored');
    assert.match(r.stderr.trimEnd(), message);
    assert.equal(r.stderr.trimEnd().split('\n').length, 1);
  }
});

test('--status-fd: one byte once the held tree is ready, then EOF while it is still held', async (t) => {
  const { image, dir } = await buildAndDump(t, alive);
  writeImage(dir, image);
  const child = spawn(process.execPath, [CLI, 'restore', '-D', dir, '--hold', '--status-fd', '3'], {
    stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
  });
  t.after(() => child.kill('SIGKILL'));
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  const status = child.stdio[3] as Readable;
  const bytes: Buffer[] = [];
  status.on('data', (d: Buffer) => bytes.push(d));
  await once(status, 'end'); // every copy of the fd is closed: no worker kept it
  assert.deepEqual(Buffer.concat(bytes), Buffer.of(0));
  assert.equal(child.exitCode, null, 'the tree is still held');
  assert.match(out, /^verification: OK/m);
  const everyone = descendantsOf(child.pid!);
  assert.ok(everyone.length >= image.tasks.length);
  assert.ok(everyone.every(exists));
  child.kill('SIGTERM');
  const [code] = await once(child, 'exit');
  assert.equal(code, 0);
  assert.deepEqual(await waitGone(everyone), []);
});

test('--status-fd: a held tree that differs from the image gets EOF without the byte', async (t) => {
  const { image, dir } = await buildAndDump(t, alive);
  writeImage(dir, image);
  const child = spawn(process.execPath, [CLI, 'restore', '-D', dir, '--hold', '--status-fd', '3'], {
    stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
    // The root keeps one extra pidfd after finalize: verification reports it.
    env: { ...process.env, TMPDIR: dir, PCR_FAULT: `leak@${image.rootPid}:finalize` },
  });
  t.after(() => child.kill('SIGKILL'));
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  const status = child.stdio[3] as Readable;
  const bytes: Buffer[] = [];
  status.on('data', (d: Buffer) => bytes.push(d));
  await once(status, 'end');
  assert.equal(Buffer.concat(bytes).length, 0, 'no status byte');
  assert.equal(child.exitCode, null, 'the tree is held all the same');
  assert.match(out, /^verification: FAILED/m);
  const everyone = descendantsOf(child.pid!);
  child.kill('SIGTERM');
  const [code] = await once(child, 'exit');
  assert.equal(code, 1);
  assert.deepEqual(await waitGone(everyone), []);
});

test('bad --status-fd values are usage errors before anything starts', async (t) => {
  const { image, dir } = await buildAndDump(t, alive);
  writeImage(dir, image);
  const readOnly = openSync(join(dir, 'pidfd-cr.img'), 'r');
  t.after(() => closeSync(readOnly));
  const cases: Array<[string[], RegExp, (number | 'ignore' | 'pipe')[]?]> = [
    [['--hold', '--status-fd', 'x'], /--status-fd must be an fd number, got 'x'$/],
    [['--hold', '--status-fd', '1'], /--status-fd 1 is stdin, stdout or stderr/],
    [['--hold', '--status-fd', '97'], /--status-fd 97: EBADF/],
    [['--status-fd', '3'], /--status-fd needs --hold/, ['ignore', 'pipe', 'pipe', 'pipe']],
    [
      ['--hold', '--status-fd', '3'],
      /--status-fd 3: not open for writing$/,
      ['ignore', 'pipe', 'pipe', readOnly],
    ],
  ];
  for (const [args, message, stdio] of cases) {
    const child = spawn(process.execPath, [CLI, 'restore', '-D', dir, ...args], {
      stdio: stdio ?? ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    let stdout = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    const [code] = await once(child, 'exit');
    assert.equal(code, 2, `${args.join(' ')}: ${stderr}`);
    assert.equal(stdout, '');
    assert.match(stderr.trimEnd(), message);
    assert.equal(stderr.trimEnd().split('\n').length, 1);
  }
});
