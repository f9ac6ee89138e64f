#!/bin/sh
# An action script for `pidfd-cr restore --action-script examples/action-script.sh`
# (docs/embedding.md, docs/cli.md "Action scripts"), run at each hook as criu runs its
# scripts. It logs what a host would look at: the action, the restored root and how many
# pidfds /proc shows it holding, and the pid map file. Lines go to $PCR_EXAMPLE_LOG (or
# stderr). With PCR_EXAMPLE_FAIL_AT=<action> it exits 3 there, which stops the restore.
n=$(ls -l "/proc/$PIDFD_CR_ROOT_PID/fd" 2>/dev/null | grep -c 'anon_inode:\[pidfd\]')
line="$CRTOOLS_SCRIPT_ACTION hook=$PIDFD_CR_HOOK root=$CRTOOLS_INIT_PID pidfds=$n map=$(cat "$PIDFD_CR_PID_MAP")"
if [ -n "$PCR_EXAMPLE_LOG" ]; then echo "$line" >>"$PCR_EXAMPLE_LOG"; else echo "$line" >&2; fi
[ "$CRTOOLS_SCRIPT_ACTION" = "${PCR_EXAMPLE_FAIL_AT:-}" ] && exit 3
exit 0
