#!/bin/sh
# Hand-off by --exec (docs/embedding.md "Hand-off", docs/restore.md "Hand-off"): restore
# the image IMAGE_DIR with every task exec'ing a C program (examples/handoff-prog.c, built
# here into WORK_DIR) that keeps the restored pidfds at their dumped numbers, and detach
# (-d) as `criu restore -d` does. --status-fd says when every task exec'd; --pid-map and
# --pidfile say which pids the tree has. Each program puts FD_CLOEXEC back with the
# documented helper and writes its view of its fds to WORK_DIR/view-<dumped pid>.json;
# this script prints those views, one JSON line per task, then exits 0, leaving the tree
# running (kill it with: kill -KILL $(cat WORK_DIR/tree.pids)).
#
# usage: examples/handoff-exec.sh IMAGE_DIR WORK_DIR   (WORK_DIR: no '"' or '\' in it)
#   PIDFD_CR: the command (default: npx pidfd-cr), CC: the C compiler (default: cc)
set -eu
[ $# -eq 2 ] || { echo "usage: $0 IMAGE_DIR WORK_DIR" >&2; exit 2; }
img=$1 work=$2
here=$(cd "$(dirname "$0")" && pwd)
prog=$work/handoff-prog

"${CC:-cc}" -O2 -Wall -o "$prog" "$here/handoff-prog.c"

# pidfd-cr's output goes to a log: the programs inherit its stderr, and a pipe to our
# caller would stay open as long as the tree runs.
if ! ${PIDFD_CR:-npx pidfd-cr} restore -D "$img" -d \
	--exec "[\"$prog\", \"$work/view-{dumped_pid}.json\"]" \
	--pid-map "$work/pid-map.json" --pidfile "$work/root.pid" \
	--status-fd 3 3>"$work/ready" >"$work/restore.log" 2>&1; then
	cat "$work/restore.log" >&2
	exit 1
fi
# One byte: every task exec'd its program (EOF alone would mean it did not).
[ "$(wc -c <"$work/ready")" -eq 1 ] || { echo "$0: no status byte" >&2; exit 1; }

# The pid map is {"<dumped pid>": restored pid, ...}: every task, zombies too.
{ tr -d '{} "\n' <"$work/pid-map.json" | tr ',' '\n' && echo; } >"$work/pid-map.txt"
cut -d: -f2 "$work/pid-map.txt" >"$work/tree.pids"
while IFS=: read -r dumped restored; do
	# A zombie was restored as a zombie: it runs no program.
	state=$(sed 's/.*) //' "/proc/$restored/stat" 2>/dev/null | cut -d' ' -f1)
	[ "$state" = Z ] && continue
	tries=0
	until [ -e "$work/view-$dumped.json" ]; do
		tries=$((tries + 1))
		[ $tries -le 300 ] || { echo "$0: task $dumped (pid $restored) wrote no view" >&2; exit 1; }
		sleep 0.1
	done
	cat "$work/view-$dumped.json"
done <"$work/pid-map.txt"
echo "$0: the tree runs on, root pid $(cat "$work/root.pid"); kill -KILL \$(cat $work/tree.pids)" >&2
