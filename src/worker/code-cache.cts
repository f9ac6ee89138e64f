/**
 * Running a CommonJS bundle through `vm.Script` with V8's code cache, so a process
 * neither parses nor compiles the bundle again (Node 20 has no module.enableCompileCache).
 * The cache, `<bundle>.cache` next to the bundle (or `cacheFile`), is written at exit by a
 * process that ran without a usable one, exited 0 and for which `worthCaching()` says so: by then it
 * holds the bytecode of every function the process ran.
 * V8 checks that a cache matches the source and the V8 version and flags; a rejected or
 * missing cache only costs the compile. CommonJS on purpose: an ES module entry would pay
 * for the ESM loader.
 */
import { readFileSync, writeFileSync, renameSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { Script } from 'node:vm';

function readCache(cacheFile: string): Buffer | undefined {
  try {
    return readFileSync(cacheFile);
  } catch {
    return undefined;
  }
}

/** Written once by whichever process lacked a cache; rename makes concurrent writers safe. */
function writeCache(cacheFile: string, script: Script): void {
  const tmp = `${cacheFile}.${process.pid}`;
  try {
    writeFileSync(tmp, script.createCachedData());
    renameSync(tmp, cacheFile);
  } catch {
    rmSync(tmp, { force: true }); // a read-only install: run without a cache
  }
}

export function runBundle(
  bundle: string,
  worthCaching: () => boolean,
  cacheFile = `${bundle}.cache`,
): void {
  const cachedData = readCache(cacheFile);
  const script = new Script(
    `(function (exports, require, module, __filename, __dirname) {${readFileSync(bundle, 'utf8')}\n})`,
    { filename: bundle, ...(cachedData ? { cachedData } : {}) },
  );
  if (!cachedData || script.cachedDataRejected) {
    process.once('exit', (code) => {
      if (code === 0 && worthCaching()) writeCache(cacheFile, script);
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
}
