/*
 * A host's program for `pidfd-cr restore --exec` (examples/handoff-exec.sh,
 * docs/embedding.md "Hand-off"): what a real program does first with the pidfds it
 * inherits. It puts FD_CLOEXEC back with the documented helper, then writes its own view
 * of its open fds (/proc/self/fd and fdinfo: flags, the pidfd's Pid:) as one JSON line to
 * the file argv[1] (atomically: a reader sees the whole line or nothing), and sleeps
 * until killed, as a restored service would run on.
 *
 *   cc -O2 -Wall -o handoff-prog examples/handoff-prog.c
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pidfd-cr-cloexec.c"

/* "flags:" (octal) and "Pid:" of /proc/self/fdinfo/FD; pid stays 0 if there is none. */
static void fdinfo_of(int fd, unsigned long *flags, long *pid)
{
	char path[64], line[256];
	FILE *f;

	snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
	f = fopen(path, "re");
	if (f == NULL)
		return;
	while (fgets(line, sizeof line, f) != NULL) {
		if (strncmp(line, "flags:", 6) == 0)
			*flags = strtoul(line + 6, NULL, 8);
		else if (strncmp(line, "Pid:", 4) == 0)
			*pid = strtol(line + 4, NULL, 10);
	}
	fclose(f);
}

int main(int argc, char **argv)
{
	static char out[1 << 16];
	const char *dumped = getenv("PIDFD_CR_DUMPED_PID");
	char tmp[4096], link[256], path[64];
	size_t n = 0;
	int fixed, first = 1, fds[1024], nfds = 0;
	struct dirent *e;
	DIR *d;
	FILE *f;

	if (argc != 2) {
		fprintf(stderr, "usage: %s OUT_FILE\n", argv[0]);
		return 2;
	}
	fixed = pidfd_cr_restore_cloexec(); /* first, before anything opens an fd */
	if (fixed < 0) {
		perror("pidfd_cr_restore_cloexec");
		return 1;
	}
	n += snprintf(out + n, sizeof out - n,
		      "{\"pid\":%d,\"dumped_pid\":%s,\"cloexec_restored\":%d,\"fds\":[",
		      (int)getpid(), dumped != NULL ? dumped : "null", fixed);
	d = opendir("/proc/self/fd");
	if (d == NULL) {
		perror("/proc/self/fd");
		return 1;
	}
	/* The numbers first: the fds opened below to read fdinfo are not ours to list. */
	while ((e = readdir(d)) != NULL && nfds < 1024)
		if (e->d_name[0] != '.' && atoi(e->d_name) != dirfd(d))
			fds[nfds++] = atoi(e->d_name);
	closedir(d);
	for (int i = 0; i < nfds && n < sizeof out - 512; i++) {
		int fd = fds[i];
		unsigned long flags = 0;
		long pid = 0;
		ssize_t len;

		snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
		len = readlink(path, link, sizeof link - 1);
		link[len < 0 ? 0 : len] = '\0';
		for (char *c = link; *c != '\0'; c++)
			if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20)
				*c = '?'; /* stays a JSON string */
		fdinfo_of(fd, &flags, &pid);
		n += snprintf(out + n, sizeof out - n,
			      "%s{\"fd\":%d,\"link\":\"%s\",\"flags\":%lu,\"pid\":%ld}",
			      first ? "" : ",", fd, link, flags, pid);
		first = 0;
	}
	n += snprintf(out + n, sizeof out - n, "]}\n");

	snprintf(tmp, sizeof tmp, "%s.tmp", argv[1]);
	f = fopen(tmp, "we");
	if (f == NULL || fwrite(out, 1, n, f) != n || fclose(f) != 0 || rename(tmp, argv[1]) != 0) {
		perror(argv[1]);
		return 1;
	}
	for (;;)
		pause();
}
