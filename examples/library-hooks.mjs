#!/usr/bin/env node
// Embedding pidfd-cr as a library (docs/embedding.md): dump a live tree, restore it with
// awaitable hooks, look at the restored tree from /proc at each hook, then let it go.
// usage: node examples/library-hooks.mjs PID IMAGE_DIR [--abort-at HOOK]
// Prints one JSON line per hook and one for the result; exit 0, or 23 when a hook aborted.
import { readdirSync, readlinkSync } from 'node:fs';
import { dumpToDir, readImage, restoreImage, PcrError, EXIT_CODES } from 'pidfd-cr';

const [pidArg, dir, flag, abortAt] = process.argv.slice(2);
if (!pidArg || !dir || (flag !== undefined && flag !== '--abort-at')) {
  console.error('usage: library-hooks.mjs PID IMAGE_DIR [--abort-at HOOK]');
  process.exit(2);
}

/** How many pidfds /proc says `pid` holds. */
const pidfdsOf = (pid) =>
  readdirSync(`/proc/${pid}/fd`).filter((fd) => {
    try {
      return readlinkSync(`/proc/${pid}/fd/${fd}`) === 'anon_inode:[pidfd]';
    } catch {
      return false;
    }
  }).length;

// A host's hook: here it only looks; a real one restores its own part of each process
// (memory, other fds) between treeBuilt and verified, or takes the pidfds at beforeHandoff.
const hook = async (c) => {
  console.log(
    JSON.stringify({
      hook: c.hook,
      rootPid: c.rootPid,
      rootPidfds: pidfdsOf(c.rootPid),
      tasks: c.pidMap.pids.length,
      differences: c.differences?.length ?? null,
    }),
  );
  if (c.hook === abortAt) return { abort: `example aborts at ${c.hook}` };
};

await dumpToDir(Number(pidArg), dir, { force: true });
try {
  const result = await restoreImage(readImage(dir), {
    hooks: { treeBuilt: hook, verified: hook, beforeHandoff: hook, beforeTeardown: hook },
    adoptOrphans: true,
  });
  console.log(JSON.stringify({ ok: result.ok, pidMap: result.pidMap.pids }));
} catch (err) {
  if (!(err instanceof PcrError)) throw err;
  console.log(JSON.stringify({ error: err.code, message: err.message }));
  process.exitCode = EXIT_CODES[err.code];
}
