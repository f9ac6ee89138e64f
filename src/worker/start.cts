/**
 * The worker's entry point (spawn-worker.ts): runs the bundled worker (`bundle.cjs`, made
 * by scripts/build.mjs) through `vm.Script` with V8's code cache, so a worker neither
 * parses nor compiles the bundle again (Node 20 has no module.enableCompileCache). The
 * cache, `bundle.cjs.cache` next to the bundle, is written at exit by a worker that ran
 * without a usable one and went through a whole restore: by then it holds the bytecode
 * of every function the worker ran.
 * V8 checks that a cache matches the source and the V8 version and flags; a rejected or
 * missing cache only costs the compile. CommonJS on purpose: an ES module entry would pay
 * for the ESM loader.
 */
import { readFileSync, writeFileSync, renameSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Script } from 'node:vm';

const bundle = join(__dirname, 'bundle.cjs');
const cacheFile = `${bundle}.cache`;

function readCache(): Buffer | undefined {
  try {
    return readFileSync(cacheFile);
  } catch {
    return undefined;
  }
}

/** Written once by whichever worker lacked a cache; rename makes concurrent writers safe. */
function writeCache(script: Script): void {
  const tmp = `${cacheFile}.${process.pid}`;
  try {
    writeFileSync(tmp, script.createCachedData());
    renameSync(tmp, cacheFile);
  } catch {
    rmSync(tmp, { force: true }); // a read-only install: run without a cache
  }
}

const cachedData = readCache();
const script = new Script(
  `(function (exports, require, module, __filename, __dirname) {${readFileSync(bundle, 'utf8')}\n})`,
  { filename: bundle, ...(cachedData ? { cachedData } : {}) },
);
// Only from a worker that ran the whole restore (run.ts sets the mark at `holding`) and
// exited 0: a cache from one that failed at start-up would hold a fraction of the code,
// and every later worker would compile the rest.
if (!cachedData || script.cachedDataRejected) {
  process.once('exit', (code) => {
    if (code === 0 && Reflect.get(globalThis, Symbol.for('pidfd-cr.worker.ran-fully')) === true) {
      writeCache(script);
    }
  });
}
const mod = { exports: {} };
(script.runInThisContext() as (...args: unknown[]) => void).call(
  mod.exports,
  mod.exports,
  createRequire(bundle),
  mod,
  bundle,
  dirname(bundle),
);
