#!/usr/bin/env node
/**
 * The `pidfd-cr` executable (package.json "bin"): the command line (main.ts) bundled into
 * one CommonJS file and run with its code cache (start.cts), or main.ts as ES modules
 * when there is no bundle. CommonJS, so a command starts without Node's ES module
 * loader (≈ 4 ms of CPU); `node dist/src/cli/main.js` runs the same commands unbundled.
 */
import { startBundled } from './start.cjs';

if (!startBundled()) void import('./main.js');
