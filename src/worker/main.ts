/**
 * The worker process: plays one dumped task. Start-up is ordered for speed: PDEATHSIG
 * first (early.ts), placeholders close-on-exec (children never inherit them), child
 * subreaper, then the child workers are spawned at once from the spawn plan the
 * coordinator left in the run directory — before this worker loads its heavy modules
 * (xstate, protobuf, the control link), so the tree starts in parallel instead of one
 * level after the other. Then run.ts is loaded and does the rest. startup-guard.ts comes
 * first: any failure from here until ASSIGN ends as a typed start-up failure.
 */
import { failStartup } from './startup/guard.js';
import { identity } from './startup/early.js';
import { setCloexec, prctl, PR_SET_CHILD_SUBREAPER } from '../../native/index.js';
import { prespawnChildren } from './startup/prespawn.js';

for (const fd of identity.reservedFds) setCloexec(fd, true);
// Orphans of our subtree come back to us (and are reaped at teardown), not to init.
prctl(PR_SET_CHILD_SUBREAPER, 1);

prespawnChildren(identity);

// Not a top-level await: the worker is bundled as CommonJS (scripts/build.mjs).
import('./run.js').catch(failStartup);
