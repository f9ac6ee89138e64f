#!/usr/bin/env node
/**
 * The `pidfd-cr` executable. The command line itself is cli.ts; scripts/build.mjs bundles
 * it into one CommonJS file, `cli.cjs`, which start.cts runs with V8's code cache (one
 * cache per command): one file read and no compilation instead of ~60 ES modules
 * resolved, read and compiled, and the addons loaded directly (docs/restore.md
 * "Performance", dump start-up). Without the bundle (a tsc-only build) cli.ts runs as is.
 */
import { createRequire } from 'node:module';

const { startBundled } = createRequire(import.meta.url)('./start.cjs') as {
  startBundled: () => boolean;
};
if (!startBundled()) await import('./cli.js');
