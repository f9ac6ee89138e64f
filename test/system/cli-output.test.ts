/**
 * stdout/stderr that cannot be written (issue 12, finding 1): a reader that left (EPIPE)
 * ends the command quietly with exit 15, a full device (ENOSPC) with one line and exit
 * 12; never a stack trace, and a running restore (or demo) is aborted through its
 * AbortSignal, so its tree is taken down, its run directory removed and nothing is left.
 * The cases of the issue run as a shell runs them (`| true`, `| head -1`, `> /dev/full`);
 * `| true` is also made deterministic with a socket whose peer is closed before the
 * command starts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EXIT_CODES } from '../../src/errors.js';
import { execFileSync, spawn } from 'node:child_process';
import {
  closeSync,
  constants,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  rmSync,
} from 'node:fs';
import { fileURLToPath } from 'node:url';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { prctl, PR_SET_CHILD_SUBREAPER } from '../../native/index.js';
import { writeImage } from '../../src/image/store.js';
import { sharedScm } from '../fixtures/scenarios.js';
import { buildAndDump } from '../helpers/restore-run.js';
import { descendantsOf } from '../helpers/proc-view.js';
import { CLI } from '../fixtures/dump-helpers.js';

interface Ended {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `argv` with the given stdio until it exits (SIGKILL after 60 s: a hang fails). */
function run(
  argv: string[],
  stdio: ['ignore', number | 'pipe', number | 'pipe'],
  env: NodeJS.ProcessEnv,
): Promise<Ended> {
  const child = spawn(argv[0]!, argv.slice(1), { stdio, env });
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  // A hang fails the test instead of blocking it; processes the command leaves may hold
  // our pipes open, so 'close' would never come: stop reading and settle on 'exit'.
  return new Promise((resolve) => {
    const hang = setTimeout(() => {
      child.kill('SIGKILL');
      child.stdout?.destroy();
      child.stderr?.destroy();
      resolve({ code: null, stdout, stderr: stderr + '(hung: killed after 60 s)' });
    }, 60_000);
    child.on('close', (code) => {
      clearTimeout(hang);
      resolve({ code, stdout, stderr });
    });
  });
}

/** `node CLI <args> <shell redirection>` in bash; the status is the CLI's (PIPESTATUS). */
const shell = (args: string, tail: string): string[] => [
  'bash',
  '-c',
  `'${process.execPath}' '${CLI}' ${args} ${tail}; exit \${PIPESTATUS[0]}`,
];

const NO_STACK = /^\s+at |internal error|Error:/m;
/** The package's executable: `dump` runs from its own bundle there (dump.cjs). */
const BIN = fileURLToPath(new URL('../../src/cli/bin.cjs', import.meta.url));

interface Setup {
  dir: string;
  env: NodeJS.ProcessEnv;
  before: Set<number>;
}

async function setUp(t: { after(fn: () => unknown): void }): Promise<Setup> {
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  const { image, dir } = await buildAndDump(t, sharedScm);
  writeImage(dir, image);
  // Run directories go under TMPDIR: the image directory, so leftovers are seen.
  return { dir, env: { ...process.env, TMPDIR: dir }, before: new Set(descendantsOf(process.pid)) };
}

/** No process of the run is left (orphans would come to us: we are a subreaper). */
function assertNothingLeft(s: Setup, tmp = s.dir, files = ['pidfd-cr.img']): void {
  assert.deepEqual(
    descendantsOf(process.pid).filter((p) => !s.before.has(p)),
    [],
    'no process of the run is left',
  );
  assert.deepEqual(readdirSync(tmp).sort(), files, 'no run directory is left');
}

/**
 * The write end of a pipe whose reader is gone before the command starts: `| true`
 * without a race (a FIFO opened both ways, then its read end closed).
 */
function closedReader(dir: string): number {
  const fifo = join(dir, 'fifo');
  execFileSync('mkfifo', [fifo]);
  const reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
  const writer = openSync(fifo, constants.O_WRONLY);
  closeSync(reader);
  rmSync(fifo);
  return writer;
}

test('restore into a closed pipe (| true): quiet, exit 15, tree taken down', async (t) => {
  const s = await setUp(t);
  const fd = closedReader(s.dir);
  try {
    const r = await run(
      [process.execPath, CLI, 'restore', '-D', s.dir],
      ['ignore', fd, 'pipe'],
      s.env,
    );
    assert.equal(r.code, EXIT_CODES.PCR_ERR_OUTPUT_CLOSED, r.stderr);
    assert.equal(r.stderr, '', 'EPIPE is quiet');
  } finally {
    closeSync(fd);
  }
  assertNothingLeft(s);
  const sh = await run(shell(`restore -D '${s.dir}'`, '| true'), ['ignore', 'pipe', 'pipe'], s.env);
  assert.equal(sh.code, EXIT_CODES.PCR_ERR_OUTPUT_CLOSED, sh.stderr);
  assert.doesNotMatch(sh.stderr, NO_STACK);
  assertNothingLeft(s);
});

test('restore > /dev/full: one line naming stdout and ENOSPC, exit 12, nothing left', async (t) => {
  const s = await setUp(t);
  const fd = openSync('/dev/full', 'w');
  try {
    const r = await run(
      [process.execPath, CLI, 'restore', '-D', s.dir],
      ['ignore', fd, 'pipe'],
      s.env,
    );
    assert.equal(r.code, 12, r.stderr);
    assert.equal(r.stderr, 'pidfd-cr: write (stdout) failed: ENOSPC (28)\n');
  } finally {
    closeSync(fd);
  }
  assertNothingLeft(s);
});

test('dump into a closed pipe: image written, quiet, exit 15; dump > /dev/full: exit 12', async (t) => {
  // dump writes its one line with write(2) while process.stdout was never made (output.ts).
  const { tree, dir } = await buildAndDump(t, sharedScm);
  for (const [i, entry] of [CLI, BIN].entries()) {
    const img = join(dir, `closed-${i}`);
    mkdirSync(img);
    const fd = closedReader(dir);
    try {
      const argv = [process.execPath, entry, 'dump', '-t', String(tree.rootPid), '-D', img];
      const r = await run(argv, ['ignore', fd, 'pipe'], process.env);
      assert.equal(r.code, EXIT_CODES.PCR_ERR_OUTPUT_CLOSED, `${entry}: ${r.stderr}`);
      assert.equal(r.stderr, '');
      assert.ok(existsSync(join(img, 'pidfd-cr.img')), 'the image is written before the line');
    } finally {
      closeSync(fd);
    }
    const full = join(dir, `full-${i}`);
    mkdirSync(full);
    const r = await run(
      [
        'bash',
        '-c',
        `'${process.execPath}' '${entry}' dump -t ${tree.rootPid} -D '${full}' > /dev/full`,
      ],
      ['ignore', 'pipe', 'pipe'],
      process.env,
    );
    assert.equal(r.code, 12, r.stderr);
    assert.equal(r.stderr, 'pidfd-cr: write (stdout) failed: ENOSPC (28)\n');
    assert.ok(existsSync(join(full, 'pidfd-cr.img')));
  }
});

test('show into a closed pipe: quiet, exit 15; show > /dev/full: exit 12', async (t) => {
  const s = await setUp(t);
  const fd = closedReader(s.dir);
  try {
    const r = await run(
      [process.execPath, CLI, 'show', '-D', s.dir],
      ['ignore', fd, 'pipe'],
      s.env,
    );
    assert.equal(r.code, EXIT_CODES.PCR_ERR_OUTPUT_CLOSED, r.stderr);
    assert.equal(r.stderr, '');
  } finally {
    closeSync(fd);
  }
  const sh = await run(
    shell(`show -D '${s.dir}' --json`, '| true'),
    ['ignore', 'pipe', 'pipe'],
    s.env,
  );
  assert.equal(sh.code, EXIT_CODES.PCR_ERR_OUTPUT_CLOSED, sh.stderr);
  assert.doesNotMatch(sh.stderr, NO_STACK);
  const full = await run(
    shell(`show -D '${s.dir}'`, '> /dev/full'),
    ['ignore', 'pipe', 'pipe'],
    s.env,
  );
  assert.equal(full.code, 12, full.stderr);
  assert.equal(full.stderr, 'pidfd-cr: write (stdout) failed: ENOSPC (28)\n');
  assertNothingLeft(s);
});

test('restore --trace 2>&1 | head -3: the trace stops the restore at the 4th line: exit 15', async (t) => {
  const s = await setUp(t);
  const r = await run(
    shell(`restore -D '${s.dir}' --trace`, '2>&1 | head -3'),
    ['ignore', 'pipe', 'pipe'],
    s.env,
  );
  assert.equal(r.code, EXIT_CODES.PCR_ERR_OUTPUT_CLOSED, r.stdout + r.stderr);
  assert.equal(r.stdout.split('\n').length, 4, r.stdout);
  assert.doesNotMatch(r.stdout + r.stderr, NO_STACK);
  assert.doesNotMatch(r.stdout, /verification/, 'aborted before verification');
  assertNothingLeft(s);
});

test('restore --trace 2> closed pipe: quiet, exit 15, nothing left', async (t) => {
  const s = await setUp(t);
  const fd = closedReader(s.dir);
  try {
    const r = await run(
      [process.execPath, CLI, 'restore', '-D', s.dir, '--trace'],
      ['ignore', 'pipe', fd],
      s.env,
    );
    assert.equal(r.code, EXIT_CODES.PCR_ERR_OUTPUT_CLOSED, r.stderr);
    assert.equal(r.stdout, '', 'aborted at the first trace line, before verification');
  } finally {
    closeSync(fd);
  }
  assertNothingLeft(s);
});

test('restore --hold | head -1 ends the hold: exit 15, held tree taken down', async (t) => {
  const s = await setUp(t);
  const r = await run(
    shell(`restore -D '${s.dir}' --hold`, '| head -1'),
    ['ignore', 'pipe', 'pipe'],
    s.env,
  );
  assert.equal(r.code, EXIT_CODES.PCR_ERR_OUTPUT_CLOSED, r.stderr);
  assert.match(r.stdout, /^restored 3 tasks from /);
  assert.doesNotMatch(r.stderr, NO_STACK);
  assertNothingLeft(s);
  // A reader that leaves during the hold without any write to notice it (sleep reads
  // nothing, then exits): the poll on the pipe sees it.
  const quiet = await run(
    shell(`restore -D '${s.dir}' --hold`, '| sleep 3'),
    ['ignore', 'pipe', 'pipe'],
    s.env,
  );
  assert.equal(quiet.code, EXIT_CODES.PCR_ERR_OUTPUT_CLOSED, quiet.stderr);
  assert.equal(quiet.stderr, '');
  assertNothingLeft(s);
});

test('demo | head -1: exit 15, demo tree and restored tree removed', async (t) => {
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  const tmp = mkdtempSync(join(tmpdir(), 'pcr-output-test-'));
  t.after(() => rmSync(tmp, { recursive: true, force: true }));
  const s: Setup = {
    dir: tmp,
    env: { ...process.env, TMPDIR: tmp },
    before: new Set(descendantsOf(process.pid)),
  };
  const r = await run(shell('demo', '| head -1'), ['ignore', 'pipe', 'pipe'], s.env);
  assert.equal(r.code, EXIT_CODES.PCR_ERR_OUTPUT_CLOSED, r.stderr);
  assert.match(r.stdout, /^built the demo tree/);
  assert.doesNotMatch(r.stderr, NO_STACK);
  assertNothingLeft(s, tmp, []);
});
