/**
 * stdout and stderr that can no longer be written: a pipe whose reader left (`| head -1`,
 * `| true`: EPIPE) or a file that fails (`> /dev/full`, a full disk: ENOSPC, EIO). Node
 * ignores SIGPIPE and reports a failed write as an `'error'` event on process.stdout or
 * process.stderr, which, unhandled, crashed the command with a stack trace and exit 1.
 *
 * The first failure decides how the command ends:
 * - EPIPE: quietly (the reader chose to stop reading), exit 15 (`PCR_ERR_OUTPUT_CLOSED`);
 * - any other errno: one line `pidfd-cr: write (stdout) failed: ENOSPC (28)` on stderr
 *   (if stderr still works) and exit 12 (`PCR_ERR_SYSCALL`), as for a trace file;
 * and every registered AbortController is aborted, so a running restore takes its tree
 * down and removes its run directory (the same path as SIGINT/SIGTERM).
 *
 * A reader can also leave while the command writes nothing (a held tree): while a
 * controller is registered, fd 1 and fd 2, when they are pipes or sockets, are watched by
 * a libuv poll on a duplicate (the kernel reports EPOLLERR for a pipe's write end without
 * readers and EPOLLHUP for a stream socket whose peer closed, whatever events were asked
 * for; only "disconnect" is asked, so a writable pipe does not wake us).
 */
import { fstatSync, writeSync } from 'node:fs';
import { PcrError, SyscallError } from '../errors.js';
import { closeQuiet, dupAbove, uvPoll, type UvPollHandle } from '../../native/index.js';

type Stream = 'stdout' | 'stderr';

let failure: PcrError | undefined;
const controllers = new Set<AbortController>();
let guarded = false;

/** The output failure that ends the command, if any (its status: exitCodeFor). */
export function outputFailure(): PcrError | undefined {
  return failure;
}

function failed(stream: Stream, errnoName: string, errno: number): void {
  if (failure) return;
  if (errnoName === 'EPIPE') {
    failure = new PcrError('PCR_ERR_OUTPUT_CLOSED', `${stream} closed by its reader (EPIPE)`);
  } else {
    failure = new SyscallError('write', errno, errnoName, stream);
    // stderr itself may be the one that failed: then this write fails too, and is ignored.
    process.stderr.write(`pidfd-cr: ${failure.message}\n`);
  }
  process.exitCode = exitStatus(failure);
  for (const c of controllers) c.abort(failure.message);
}

/** Late-bound to avoid a cycle in what main.ts imports first. */
let exitStatus: (err: PcrError) => number = () => 1;

/**
 * Handles write errors of stdout and stderr for the rest of the process. `statusOf` maps
 * the failure to the exit status (main.ts passes exitCodeFor).
 */
export function guardOutput(statusOf: (err: PcrError) => number): void {
  exitStatus = statusOf;
  if (guarded) return;
  guarded = true;
  for (const stream of ['stdout', 'stderr'] as const) guardWhenMade(stream);
}

/** Streams made so far (process.stdout / process.stderr were read). */
const made = new Set<Stream>();

/**
 * Node makes process.stdout and process.stderr on first use, loading its stream modules
 * (node:stream, and node:net or node:tty for a pipe or a terminal: 1.5–3 ms of CPU). The
 * error handler is attached when the stream is made, through a getter put in front of
 * Node's own (restored at once), so a command that never uses one does not make it.
 */
function guardWhenMade(stream: Stream): void {
  const attach = (s: NodeJS.WriteStream): NodeJS.WriteStream => {
    made.add(stream);
    s.on('error', (err: NodeJS.ErrnoException) => {
      failed(stream, err.code ?? 'EIO', Math.abs(err.errno ?? 5));
    });
    return s;
  };
  const own = Object.getOwnPropertyDescriptor(process, stream);
  const nodeGetter = own?.get;
  if (!own?.configurable || !nodeGetter) {
    attach(process[stream]);
    return;
  }
  Object.defineProperty(process, stream, {
    configurable: true,
    enumerable: own.enumerable ?? true,
    get() {
      Object.defineProperty(process, stream, own);
      return attach(nodeGetter.call(process) as NodeJS.WriteStream);
    },
  });
}

/**
 * Writes `text` to stdout. While process.stdout is not made, with write(2) on fd 1 at
 * once (a command that prints one line at its end then never loads Node's streams); a
 * failure there ends the command as the stream's 'error' would (EPIPE quietly, exit 15;
 * any other errno one line, exit 12); a full non-blocking pipe (EAGAIN) passes the rest
 * to process.stdout.
 */
export function writeStdout(text: string): void {
  if (made.has('stdout') || !guarded) {
    process.stdout.write(text);
    return;
  }
  const bytes = Buffer.from(text);
  let off = 0;
  try {
    while (off < bytes.length) off += writeSync(1, bytes, off);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'EAGAIN') process.stdout.write(bytes.subarray(off));
    else failed('stdout', e.code ?? 'EIO', Math.abs(e.errno ?? 5));
  }
}

/** A pipe or a socket: something whose reader can leave. */
function isPipe(fd: number): boolean {
  try {
    const st = fstatSync(fd);
    return st.isFIFO() || st.isSocket();
  } catch {
    return false;
  }
}

interface ReaderWatch {
  handle: UvPollHandle;
  fd: number;
}

let watches: ReaderWatch[] = [];

function watchReaders(): void {
  for (const [fd, stream] of [
    [1, 'stdout'],
    [2, 'stderr'],
  ] as const) {
    if (!isPipe(fd)) continue;
    // A duplicate: the stream's own libuv handle may watch fd 1 or 2 for its writes.
    const dup = dupAbove(fd, 3);
    const handle = uvPoll(dup, { disconnect: true }, (() => {
      // Level-triggered: stop watching at once, or it fires until the command ends.
      unwatchReaders();
      failed(stream, 'EPIPE', 32);
    }) as never);
    watches.push({ handle, fd: dup });
  }
}

function unwatchReaders(): void {
  for (const w of watches) {
    w.handle.close();
    closeQuiet(w.fd);
  }
  watches = [];
}

/**
 * Aborts `controller` when output fails (at once if it failed already) until the returned
 * function is called; meanwhile a reader that leaves is noticed without a write.
 */
export function abortOnOutputFailure(controller: AbortController): () => void {
  if (failure) controller.abort(failure.message);
  controllers.add(controller);
  if (controllers.size === 1) watchReaders();
  return () => {
    if (!controllers.delete(controller)) return;
    if (controllers.size === 0) unwatchReaders();
  };
}
