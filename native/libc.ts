/**
 * The unsafe boundary: every koffi declaration of pidfd-cr lives here and nowhere else.
 * Other modules of `native/` wrap these raw functions in small typed calls that throw
 * `SyscallError`; nothing outside `native/` imports koffi.
 */
import koffi from 'koffi';
import { PcrError, SyscallError } from '../src/errors.js';

const lib = koffi.load('libc.so.6');

/** C prototypes of the raw libc entry points, by name. */
const PROTOTYPES = {
  syscall: 'long syscall(long nr, ...)',
  pidfd_open: 'int pidfd_open(int pid, unsigned int flags)',
  pidfd_send_signal: 'int pidfd_send_signal(int pidfd, int sig, void *info, unsigned int flags)',
  pidfd_getfd: 'int pidfd_getfd(int pidfd, int targetfd, unsigned int flags)',
  ioctl: 'int ioctl(int fd, unsigned long req, ...)',
  fcntl: 'int fcntl(int fd, int cmd, ...)',
  dup3: 'int dup3(int oldfd, int newfd, int flags)',
  close: 'int close(int fd)',
  open: 'int open(const char *path, int flags, ...)',
  name_to_handle_at:
    'int name_to_handle_at(int dirfd, const char *path, void *handle, void *mount_id, int flags)',
  open_by_handle_at: 'int open_by_handle_at(int mount_fd, void *handle, int flags)',
  socket: 'int socket(int domain, int type, int protocol)',
  socketpair: 'int socketpair(int domain, int type, int protocol, void *sv)',
  bind: 'int bind(int fd, void *addr, unsigned int len)',
  listen: 'int listen(int fd, int backlog)',
  accept4: 'int accept4(int fd, void *addr, void *len, int flags)',
  connect: 'int connect(int fd, void *addr, unsigned int len)',
  getsockopt: 'int getsockopt(int fd, int level, int name, void *val, void *len)',
  sendmsg: 'long sendmsg(int fd, void *msg, int flags)',
  send: 'long send(int fd, const void *buf, size_t len, int flags)',
  recv: 'long recv(int fd, void *buf, size_t len, int flags)',
  recvmsg: 'long recvmsg(int fd, void *msg, int flags)',
  posix_spawn:
    'int posix_spawn(void *pid, const char *path, void *fa, void *attr, const char **argv, const char **envp)',
  posix_spawn_file_actions_init: 'int posix_spawn_file_actions_init(void *fa)',
  posix_spawn_file_actions_destroy: 'int posix_spawn_file_actions_destroy(void *fa)',
  posix_spawn_file_actions_adddup2:
    'int posix_spawn_file_actions_adddup2(void *fa, int fd, int newfd)',
  posix_spawn_file_actions_addclose: 'int posix_spawn_file_actions_addclose(void *fa, int fd)',
  posix_spawn_file_actions_addclosefrom_np:
    'int posix_spawn_file_actions_addclosefrom_np(void *fa, int from)',
  posix_spawnattr_init: 'int posix_spawnattr_init(void *attr)',
  posix_spawnattr_destroy: 'int posix_spawnattr_destroy(void *attr)',
  posix_spawnattr_setflags: 'int posix_spawnattr_setflags(void *attr, short flags)',
  posix_spawnattr_setsigdefault: 'int posix_spawnattr_setsigdefault(void *attr, void *sigset)',
  posix_spawnattr_setsigmask: 'int posix_spawnattr_setsigmask(void *attr, void *sigset)',
  waitid: 'int waitid(int idtype, int id, void *info, int options)',
  waitpid: 'int waitpid(int pid, void *status, int options)',
  prctl: 'int prctl(int option, ...)',
  kill: 'int kill(int pid, int sig)',
  setrlimit: 'int setrlimit(int resource, void *rlim)',
  getpid: 'int getpid()',
  getrandom: 'long getrandom(void *buf, size_t len, unsigned int flags)',
  execve: 'int execve(const char *path, const char **argv, const char **envp)',
  close_range: 'int close_range(unsigned int first, unsigned int last, int flags)',
  signal: 'void *signal(int sig, void *handler)',
  sigprocmask: 'int sigprocmask(int how, void *set, void *old)',
  mmap: 'void *mmap(void *addr, size_t len, int prot, int flags, int fd, long off)',
  mprotect: 'int mprotect(void *addr, size_t len, int prot)',
  mount:
    'int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const void *data)',
} as const;

type LibcFunction = ReturnType<typeof lib.func>;

/**
 * Raw libc entry points. Pointer arguments take Buffers (koffi passes their address).
 * Each is declared to koffi on first use (a worker uses about half of them; declaring all
 * at start-up cost ≈ 1 ms of its CPU), then stays a plain property.
 */
export const libc = {} as { readonly [name in keyof typeof PROTOTYPES]: LibcFunction };
for (const [name, prototype] of Object.entries(PROTOTYPES)) {
  Object.defineProperty(libc, name, {
    configurable: true,
    enumerable: true,
    get(): LibcFunction {
      const fn = lib.func(prototype);
      Object.defineProperty(libc, name, { value: fn, enumerable: true });
      return fn;
    },
  });
}

/** Non-blocking readiness on an fd through a libuv poll handle (no threads involved). */
export const uvPoll = koffi.node.poll;
export type UvPollHandle = ReturnType<typeof koffi.node.poll>;

/** Buffer address, for building structs that point at other Buffers. */
export function addressOf(buf: Buffer): bigint {
  return koffi.address(buf);
}

/** Built on the first failure, not at start-up. */
let errnoNames: Map<number, string> | undefined;

export function errnoName(errno: number): string {
  errnoNames ??= new Map(Object.entries(koffi.os.errno).map(([name, num]) => [num, name]));
  return errnoNames.get(errno) ?? `E${errno}`;
}

/** Symbolic name → number, e.g. errnoNumber('ESRCH') === 3. */
export function errnoNumber(name: string): number {
  const n = (koffi.os.errno as Record<string, number>)[name];
  if (n === undefined) throw new PcrError('PCR_ERR_INTERNAL', `unknown errno name ${name}`);
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
