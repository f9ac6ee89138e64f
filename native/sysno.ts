/**
 * x86-64 system call numbers (arch/x86/entry/syscalls/syscall_64.tbl) for the calls glibc
 * has no wrapper for, or that the syscall lists of clone3.ts and tiny.ts run in a child.
 */
export const SYS = {
  read: 0,
  close: 3,
  rt_sigaction: 13,
  rt_sigprocmask: 14,
  dup2: 33,
  getpid: 39,
  execve: 59,
  kill: 62,
  ptrace: 101,
  setsid: 112,
  prctl: 157,
  gettid: 186,
  exit_group: 231,
  prlimit64: 302,
  kcmp: 312,
  clone3: 435,
  close_range: 436,
} as const;
