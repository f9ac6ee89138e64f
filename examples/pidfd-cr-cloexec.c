/*
 * For a C program started by `pidfd-cr restore --exec`: put FD_CLOEXEC back on the
 * pidfds that were close-on-exec when dumped. They had to lose the bit to survive
 * execve; PIDFD_CR_CLOEXEC_FDS names them, e.g. "5,9" (empty: none).
 * See docs/restore.md "Hand-off". Public domain; copy it into your program.
 *
 *   cc -O2 -Wall -o prog prog.c pidfd-cr-cloexec.c   (or #include it)
 *   int main(void) { if (pidfd_cr_restore_cloexec() < 0) return 1; ... }
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>

/* Returns the number of fds fixed, or -1 (errno set) on a malformed list or a bad fd. */
int pidfd_cr_restore_cloexec(void)
{
	const char *s = getenv("PIDFD_CR_CLOEXEC_FDS");
	int n = 0;

	if (s == NULL)
		return 0;
	while (*s != '\0') {
		char *end;
		long fd = strtol(s, &end, 10);
		int flags;

		if (end == s || fd < 0 || (*end != ',' && *end != '\0')) {
			errno = EINVAL;
			return -1;
		}
		flags = fcntl((int)fd, F_GETFD);
		if (flags < 0 || fcntl((int)fd, F_SETFD, flags | FD_CLOEXEC) < 0)
			return -1;
		n++;
		s = *end == ',' ? end + 1 : end;
	}
	unsetenv("PIDFD_CR_CLOEXEC_FDS");
	return n;
}
