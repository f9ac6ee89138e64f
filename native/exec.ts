/**
 * Replacing the calling process with another program (execve) so that exactly the given
 * fds survive: every other fd is made close-on-exec in one close_range(CLOSE_RANGE_CLOEXEC)
 * per gap between the kept ones (atomic against fds other threads open meanwhile, which
 * libuv and V8 open close-on-exec anyway), the kept ones lose FD_CLOEXEC. Signals the
 * Node runtime ignores (SIGPIPE, SIGXFSZ: ignored dispositions survive execve) go back to
 * their default and the signal mask is emptied, so the program starts as from a shell.
 */
import { libc, check, fail } from './libc.js';
import { setCloexec } from './fd.js';

const CLOSE_RANGE_CLOEXEC = 1 << 2;
const MAX_FD = 0xffffffff;
const SIG_SETMASK = 2;
const SIGPIPE = 13;
const SIGXFSZ = 25;

export interface ExecRequest {
  /** Absolute path of the program. */
  path: string;
  argv: readonly string[];
  /** The whole environment, "NAME=value". */
  env: readonly string[];
  /** fds that stay open across execve (FD_CLOEXEC cleared); every other fd is closed. */
  keep: readonly number[];
}

/** Every fd but `keep` close-on-exec (gaps of the sorted kept list), `keep` inheritable. */
export function cloexecAllBut(keep: readonly number[]): void {
  const sorted = [...new Set(keep)].sort((a, b) => a - b);
  let from = 0;
  for (const fd of sorted) {
    if (fd > from)
      check(
        libc.close_range(from, fd - 1, CLOSE_RANGE_CLOEXEC),
        'close_range',
        `${from}-${fd - 1}`,
      );
    from = fd + 1;
  }
  check(libc.close_range(from, MAX_FD, CLOSE_RANGE_CLOEXEC), 'close_range', `${from}-`);
  for (const fd of sorted) setCloexec(fd, false);
}

/**
 * execve(path, argv, env) keeping exactly `keep` open. Returns only by throwing
 * SyscallError('execve') (the process is unchanged then, but for the close-on-exec
 * bits and the signal dispositions named above).
 */
export function execKeeping(req: ExecRequest): never {
  cloexecAllBut(req.keep);
  libc.signal(SIGPIPE, null);
  libc.signal(SIGXFSZ, null);
  check(libc.sigprocmask(SIG_SETMASK, Buffer.alloc(128), null), 'sigprocmask');
  libc.execve(req.path, [...req.argv, null], [...req.env, null]);
  fail('execve', req.path);
}
