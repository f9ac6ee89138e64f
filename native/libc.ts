/**
 * The unsafe boundary: every koffi declaration of pidfd-cr lives here and nowhere else.
 * Other modules of `native/` wrap these raw functions in small typed calls that throw
 * `SyscallError`; nothing outside `native/` imports koffi.
 */
import koffi from 'koffi';
import { SyscallError } from '../src/errors.js';

const lib = koffi.load('libc.so.6');

/** Raw libc entry points. Pointer arguments take Buffers (koffi passes their address). */
export const libc = {
  syscall: lib.func('long syscall(long nr, ...)'),
  pidfd_open: lib.func('int pidfd_open(int pid, unsigned int flags)'),
  pidfd_send_signal: lib.func(
    'int pidfd_send_signal(int pidfd, int sig, void *info, unsigned int flags)',
  ),
  pidfd_getfd: lib.func('int pidfd_getfd(int pidfd, int targetfd, unsigned int flags)'),
  ioctl: lib.func('int ioctl(int fd, unsigned long req, ...)'),
  fcntl: lib.func('int fcntl(int fd, int cmd, ...)'),
  dup3: lib.func('int dup3(int oldfd, int newfd, int flags)'),
  close: lib.func('int close(int fd)'),
  open: lib.func('int open(const char *path, int flags, ...)'),
  name_to_handle_at: lib.func(
    'int name_to_handle_at(int dirfd, const char *path, void *handle, void *mount_id, int flags)',
  ),
  open_by_handle_at: lib.func('int open_by_handle_at(int mount_fd, void *handle, int flags)'),
  socket: lib.func('int socket(int domain, int type, int protocol)'),
  socketpair: lib.func('int socketpair(int domain, int type, int protocol, void *sv)'),
  bind: lib.func('int bind(int fd, void *addr, unsigned int len)'),
  listen: lib.func('int listen(int fd, int backlog)'),
  accept4: lib.func('int accept4(int fd, void *addr, void *len, int flags)'),
  connect: lib.func('int connect(int fd, void *addr, unsigned int len)'),
  getsockopt: lib.func('int getsockopt(int fd, int level, int name, void *val, void *len)'),
  sendmsg: lib.func('long sendmsg(int fd, void *msg, int flags)'),
  recvmsg: lib.func('long recvmsg(int fd, void *msg, int flags)'),
  posix_spawn: lib.func(
    'int posix_spawn(void *pid, const char *path, void *fa, void *attr, const char **argv, const char **envp)',
  ),
  posix_spawn_file_actions_init: lib.func('int posix_spawn_file_actions_init(void *fa)'),
  posix_spawn_file_actions_destroy: lib.func('int posix_spawn_file_actions_destroy(void *fa)'),
  posix_spawn_file_actions_adddup2: lib.func(
    'int posix_spawn_file_actions_adddup2(void *fa, int fd, int newfd)',
  ),
  posix_spawn_file_actions_addclose: lib.func(
    'int posix_spawn_file_actions_addclose(void *fa, int fd)',
  ),
  posix_spawn_file_actions_addclosefrom_np: lib.func(
    'int posix_spawn_file_actions_addclosefrom_np(void *fa, int from)',
  ),
  posix_spawnattr_init: lib.func('int posix_spawnattr_init(void *attr)'),
  posix_spawnattr_destroy: lib.func('int posix_spawnattr_destroy(void *attr)'),
  posix_spawnattr_setflags: lib.func('int posix_spawnattr_setflags(void *attr, short flags)'),
  posix_spawnattr_setsigdefault: lib.func(
    'int posix_spawnattr_setsigdefault(void *attr, void *sigset)',
  ),
  posix_spawnattr_setsigmask: lib.func('int posix_spawnattr_setsigmask(void *attr, void *sigset)'),
  waitid: lib.func('int waitid(int idtype, int id, void *info, int options)'),
  waitpid: lib.func('int waitpid(int pid, void *status, int options)'),
  prctl: lib.func('int prctl(int option, ...)'),
  kill: lib.func('int kill(int pid, int sig)'),
  setrlimit: lib.func('int setrlimit(int resource, void *rlim)'),
  getpid: lib.func('int getpid()'),
};

/** Non-blocking readiness on an fd through a libuv poll handle (no threads involved). */
export const uvPoll = koffi.node.poll;
export type UvPollHandle = ReturnType<typeof koffi.node.poll>;

/** Buffer address, for building structs that point at other Buffers. */
export function addressOf(buf: Buffer): bigint {
  return koffi.address(buf);
}

const errnoNames: Map<number, string> = new Map(
  Object.entries(koffi.os.errno).map(([name, num]) => [num, name]),
);

export function errnoName(errno: number): string {
  return errnoNames.get(errno) ?? `E${errno}`;
}

/** Symbolic name → number, e.g. errnoNumber('ESRCH') === 3. */
export function errnoNumber(name: string): number {
  const n = (koffi.os.errno as Record<string, number>)[name];
  if (n === undefined) throw new Error(`unknown errno name ${name}`);
  return n;
}

/** Reads errno right after a failed call and throws it as a SyscallError. */
export function fail(syscall: string, detail?: string): never {
  const e = koffi.errno();
  throw new SyscallError(syscall, e, errnoName(e), detail);
}

/** Throws for a libc return of -1 (errno style); returns the value otherwise. */
export function check(ret: number | bigint, syscall: string, detail?: string): number {
  const n = Number(ret);
  if (n === -1) fail(syscall, detail);
  return n;
}

/** For posix_spawn*-style calls that return the error number instead of setting errno. */
export function checkReturned(ret: number, syscall: string, detail?: string): void {
  if (ret !== 0) throw new SyscallError(syscall, ret, errnoName(ret), detail);
}
