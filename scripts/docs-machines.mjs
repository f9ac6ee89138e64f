// Rewrites the generated statecharts of docs/machines.md (the output of `pidfd-cr machines
// --format mermaid`) from the compiled machines: run `npm run docs:machines` after changing
// src/machines/. Without --write it only checks, exiting 1 when the file is stale.
import { readFileSync, writeFileSync } from 'node:fs';
import { updateMachinesDoc } from '../dist/src/viz/docs.js';

const path = new URL('../docs/machines.md', import.meta.url);
const doc = readFileSync(path, 'utf8');
const fresh = updateMachinesDoc(doc);
if (process.argv.includes('--write')) {
  if (fresh !== doc) writeFileSync(path, fresh);
  console.log(fresh === doc ? 'docs/machines.md is up to date' : 'docs/machines.md rewritten');
} else if (fresh !== doc) {
  console.error('docs/machines.md is stale: npm run docs:machines');
  process.exit(1);
}
