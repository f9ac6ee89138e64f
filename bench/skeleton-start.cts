/** The skeleton worker's entry (bench/skeleton-worker.ts), with a code cache like a worker's. */
import { join } from 'node:path';
import { runBundle } from '../src/worker/code-cache.cjs';

runBundle(join(__dirname, 'skeleton.cjs'), () => true);
