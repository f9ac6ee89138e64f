#!/usr/bin/env node
/**
 * The `pidfd-cr` executable (package.json "bin"): main.ts in CommonJS, so a command
 * starts without Node's ES module loader (≈ 4 ms of CPU): the bundled command line with
 * its code cache (start.cts), or cli.ts as ES modules when there is no bundle.
 */
import { startBundled } from './start.cjs';

if (!startBundled()) void import('./cli.js');
