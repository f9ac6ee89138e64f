/**
 * The worker's entry point (spawn-worker.ts): runs the bundled worker (`bundle.cjs`, made
 * by scripts/build.mjs) with V8's code cache (code-cache.cts).
 */
import { join } from 'node:path';
import { runBundle } from './code-cache.cjs';
import { ranFully } from './cache-mark.cjs';

// Cached only by a worker that ran the whole restore (run.ts sets the mark at `holding`)
// and exited 0: a cache from one that failed at start-up would hold a fraction of the
// code, and every later worker would compile the rest.
runBundle(join(__dirname, 'bundle.cjs'), ranFully);
