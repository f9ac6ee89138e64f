/*
 * Reference host for `pidfd-cr swrk FD` in C, with protobuf-c (Debian: protobuf-c-compiler,
 * libprotobuf-c-dev). Same cycle as swrk-client.py: VERSION, DUMP of a live tree, RESTORE
 * with hold and notifications (each acknowledged), the pid map, TEARDOWN.
 *
 * Build:  protoc-c --proto_path=proto --c_out=OUT swrk.proto
 *         cc -I OUT -o swrk-client examples/swrk-client.c OUT/swrk.pb-c.c -lprotobuf-c
 * Run:    ./swrk-client PID IMAGE_DIR pidfd-cr-command... (e.g. node dist/src/cli/main.js)
 * Prints one line per step: "version V", "dump T P", "notify HOOK SCRIPT ROOT",
 * "restored DUMPED RESTORED" per task, "held OK", "teardown"; exit 0, or 1 with
 * "error CODE STATUS MESSAGE".
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include "swrk.pb-c.h"

typedef Pidfdcr__Swrk__Request Request;
typedef Pidfdcr__Swrk__Response Response;

static int sock = -1;

static void send_request(const Request *req)
{
	size_t len = pidfdcr__swrk__request__get_packed_size(req);
	uint8_t *buf = malloc(len ? len : 1);
	pidfdcr__swrk__request__pack(req, buf);
	if (send(sock, buf, len, MSG_NOSIGNAL) != (ssize_t)len) {
		perror("send");
		exit(2);
	}
	free(buf);
}

static Response *recv_response(void)
{
	static uint8_t buf[65536];
	ssize_t n = recv(sock, buf, sizeof(buf), 0);
	if (n <= 0) {
		fprintf(stderr, "the service closed its end\n");
		exit(2);
	}
	Response *r = pidfdcr__swrk__response__unpack(NULL, (size_t)n, buf);
	if (!r) {
		fprintf(stderr, "undecodable response\n");
		exit(2);
	}
	return r;
}

static void fail(const Response *r)
{
	const Pidfdcr__Swrk__Error *e = r->error;
	printf("error %s %d %s\n", e ? e->code : "?", e ? e->exit_status : -1,
	       e ? e->message : "?");
	exit(1);
}

/* Answers NOTIFY responses with success until another response comes; returns it. */
static Response *ack_notifications(void)
{
	for (;;) {
		Response *r = recv_response();
		if (r->type != PIDFDCR__SWRK__REQ_TYPE__NOTIFY)
			return r;
		printf("notify %s %s %d\n", r->notify->hook, r->notify->script, r->notify->root_pid);
		Request ack = PIDFDCR__SWRK__REQUEST__INIT;
		ack.type = PIDFDCR__SWRK__REQ_TYPE__NOTIFY;
		ack.notify_success = 1;
		send_request(&ack);
		pidfdcr__swrk__response__free_unpacked(r, NULL);
	}
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: %s PID IMAGE_DIR pidfd-cr-command...\n", argv[0]);
		return 2;
	}
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv)) {
		perror("socketpair");
		return 2;
	}
	pid_t child = fork();
	if (child == 0) {
		/* The service's end, as fd 3 without close-on-exec. */
		if (dup2(sv[1], 3) < 0)
			_exit(127);
		char **args = calloc((size_t)argc, sizeof(char *));
		int k = 0;
		for (int i = 3; i < argc; i++)
			args[k++] = argv[i];
		args[k++] = "swrk";
		args[k++] = "3";
		args[k] = NULL;
		execvp(args[0], args);
		_exit(127);
	}
	close(sv[1]);
	sock = sv[0];
	setvbuf(stdout, NULL, _IOLBF, 0);

	Request req = PIDFDCR__SWRK__REQUEST__INIT;
	req.type = PIDFDCR__SWRK__REQ_TYPE__VERSION;
	send_request(&req);
	Response *r = recv_response();
	printf("version %s\n", r->version);
	pidfdcr__swrk__response__free_unpacked(r, NULL);

	Pidfdcr__Swrk__DumpRequest dump = PIDFDCR__SWRK__DUMP_REQUEST__INIT;
	dump.pid = atoi(argv[1]);
	dump.images_dir = argv[2];
	req.type = PIDFDCR__SWRK__REQ_TYPE__DUMP;
	req.dump = &dump;
	send_request(&req);
	r = recv_response();
	if (!r->success)
		fail(r);
	printf("dump %d %d\n", r->dump->tasks, r->dump->pidfds);
	pidfdcr__swrk__response__free_unpacked(r, NULL);

	Pidfdcr__Swrk__RestoreRequest restore = PIDFDCR__SWRK__RESTORE_REQUEST__INIT;
	restore.images_dir = argv[2];
	restore.hold = 1;
	restore.notify = 1;
	req.type = PIDFDCR__SWRK__REQ_TYPE__RESTORE;
	req.dump = NULL;
	req.restore = &restore;
	send_request(&req);
	r = ack_notifications();
	if (r->type != PIDFDCR__SWRK__REQ_TYPE__RESTORE || !r->success)
		fail(r);
	for (size_t i = 0; i < r->restore->n_pids; i++)
		printf("restored %d %d\n", r->restore->pids[i]->dumped, r->restore->pids[i]->restored);
	printf("held %d %d\n", r->restore->held, r->restore->ok);
	pidfdcr__swrk__response__free_unpacked(r, NULL);

	Request teardown = PIDFDCR__SWRK__REQUEST__INIT;
	teardown.type = PIDFDCR__SWRK__REQ_TYPE__TEARDOWN;
	send_request(&teardown);
	r = ack_notifications();
	if (r->type != PIDFDCR__SWRK__REQ_TYPE__TEARDOWN || !r->success)
		fail(r);
	printf("teardown\n");
	pidfdcr__swrk__response__free_unpacked(r, NULL);

	close(sock);
	int status;
	if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "the service did not exit 0 (status %#x)\n", status);
		return 1;
	}
	return 0;
}
