// Build: protobuf static code from proto/ into gen/, then tsc into dist/, then the
// generated JS next to the compiled code. Node 20 cannot run .ts, so this is required.
// Last, the worker process is bundled into one CommonJS file (docs/restore.md,
// "Performance"): one file to read and compile instead of ~100 ESM modules and the CJS
// wrappers of protobufjs; the native addons are loaded from their files (see workerBundle).
// Workers start from src/worker/start.cts, which runs the bundle with V8's code cache.
import { execFileSync } from 'node:child_process';
import { build } from 'esbuild';
import {
  mkdirSync,
  copyFileSync,
  chmodSync,
  readdirSync,
  readFileSync,
  rmSync,
  realpathSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';

const bin = (name) => `node_modules/.bin/${name}`;
const run = (cmd, args) => {
  try {
    execFileSync(cmd, args, { stdio: 'inherit' });
  } catch {
    console.error(`build: ${cmd} failed`);
    process.exit(1);
  }
};

mkdirSync('gen', { recursive: true });
const protos = readdirSync('proto')
  .filter((f) => f.endsWith('.proto'))
  .map((f) => `proto/${f}`);
const pbjs = (out, extra, files) =>
  run(bin('pbjs'), [
    '-t',
    'static-module',
    '-w',
    'es6',
    '--es6',
    '--no-beautify',
    '-d',
    ...extra,
    '-o',
    out,
    ...files,
  ]);
pbjs('gen/pb.js', [], protos);
// The worker's copy (bundle only, in place of gen/pb.js): the control protocol alone, and
// only encode/decode — a quarter of the code to load and evaluate (≈ -4 ms CPU per worker).
const LEAN = [
  '--no-verify',
  '--no-convert',
  '--no-delimited',
  '--no-typeurl',
  '--no-service',
  '--no-comments',
];
pbjs('gen/pb-worker.js', LEAN, ['proto/protocol.proto']);
// The command line's copy (its bundle only): every proto, encode/decode only (nothing in
// src/ uses verify, fromObject or toObject): 183 KB instead of 634 KB to evaluate.
pbjs('gen/pb-lean.js', LEAN, protos);
// The dump's bundle writes an image and nothing else: image.proto alone (6 messages of 62).
pbjs('gen/pb-image.js', LEAN, ['proto/image.proto']);
rmSync('dist', { recursive: true, force: true });
run(bin('tsc'), ['-p', '.']);
mkdirSync('dist/gen', { recursive: true });
copyFileSync('gen/pb.js', 'dist/gen/pb.js');
// Its types: dist/src/**/*.d.ts import ../../gen/pb.js (an installed package's API types).
copyFileSync('gen/pb.d.ts', 'dist/gen/pb.d.ts');
chmodSync('dist/src/cli/main.js', 0o755);
chmodSync('dist/src/cli/bin.cjs', 0o755);

const BUNDLE = 'dist/src/worker/bundle.cjs';

/**
 * The native addon file that `pkg`'s own loader picks on this machine (found by loading
 * it here); undefined if not found.
 */
function addonPath(pkg, marker) {
  const req = createRequire(import.meta.url);
  try {
    req(pkg);
  } catch {
    return undefined;
  }
  return Object.keys(req.cache).find((f) => f.endsWith('.node') && f.includes(marker));
}

/** A real path inside node_modules as a path relative to the directory of `bundle`
 * (through ./node_modules, which may be a symlink). */
function fromBundle(realPath, bundle) {
  const inModules = relative(realpathSync('node_modules'), realPath);
  const path = inModules.startsWith('..') ? realPath : join('node_modules', inModules);
  return relative(dirname(bundle), path);
}

/**
 * koffi's and zeromq's loaders find their addon at run time (ELF parsing of the node
 * binary, a JSON manifest, directory probes, uncached JS: ≈ 20 ms of a worker's CPU). The
 * bundle loads the file found at build time directly and falls back to the package's own
 * loader when that file is missing (a moved install). zeromq's JS is bundled (code-cached)
 * with its `load-addon.js` replaced; koffi's JS only wraps the addon with deprecated
 * aliases, so the addon itself is what `import koffi from 'koffi'` gets.
 */
const koffiAddon = addonPath('koffi', 'koffi');
const zmqAddon = addonPath('zeromq', 'zeromq');
const joinDir = (rel) => `require('node:path').join(__dirname, ${JSON.stringify(rel)})`;
const loadDirect = (rel, fallback) =>
  `let addon;\ntry { addon = require(${joinDir(rel)}); } catch {}\naddon ??= ${fallback};\n`;

/** The esbuild plugin for a bundle written to `outfile`, with `protobuf` for gen/pb.js. */
const workerBundle = (outfile, protobuf) => ({
  name: 'worker-bundle',
  setup(b) {
    // gen/pb.js → a lean copy (the same messages, encode/decode only).
    b.onResolve({ filter: /[\\/]gen[\\/]pb\.js$/ }, () => ({ path: resolve(protobuf) }));
    if (koffiAddon) {
      // The fallback's require('koffi') (from the 'addon' namespace) is the real package.
      b.onResolve({ filter: /^koffi$/ }, (args) =>
        args.namespace === 'addon'
          ? { path: 'koffi', external: true }
          : { path: 'koffi', namespace: 'addon' },
      );
      b.onLoad({ filter: /^koffi$/, namespace: 'addon' }, () => ({
        contents: `${loadDirect(fromBundle(koffiAddon, outfile), "require('koffi')")}module.exports = addon;\n`,
        loader: 'js',
      }));
    }
    if (zmqAddon) {
      b.onLoad({ filter: /zeromq[\\/]lib[\\/]load-addon\.js$/ }, (args) => {
        // Fallback: zeromq's own loader, resolved at run time from the bundle (a hoisted
        // install has zeromq elsewhere); an aliased require is not bundled by esbuild.
        const fallback = `((r) => r('zeromq/lib/load-addon.js').default)(require)`;
        return {
          // zeromq's native.js takes `default` of an ES-module-shaped export.
          contents: `${loadDirect(fromBundle(zmqAddon, outfile), fallback)}exports.__esModule = true;\nexports.default = addon;\n`,
          loader: 'js',
          resolveDir: dirname(args.path),
        };
      });
    }
  },
});

/**
 * A CommonJS bundle of the compiled `entry` for a process started by pidfd-cr. `protobuf`:
 * the generated module that stands for gen/pb.js (a worker needs only the protocol).
 */
async function bundle(entry, outfile, protobuf = 'gen/pb-worker.js') {
  try {
    await build({
      entryPoints: [entry],
      outfile,
      bundle: true,
      platform: 'node',
      target: 'node20',
      format: 'cjs',
      // zeromq's JS is bundled only when its addon was found (its own loader looks for
      // the addon relative to its own files).
      external: zmqAddon ? ['koffi'] : ['koffi', 'zeromq'],
      plugins: [workerBundle(outfile, protobuf)],
      // Less to read and hash (identifiers kept: stack traces stay readable): ≈ -5 ms CPU.
      minifyWhitespace: true,
      minifySyntax: true,
      // import.meta.url of the bundled modules is the bundle's own URL (spawn-worker.ts
      // resolves the worker script from it).
      define: { 'import.meta.url': '__pcrBundleUrl' },
      banner: {
        js: 'const __pcrBundleUrl = require("node:url").pathToFileURL(__filename).href;',
      },
      logLevel: 'warning',
    });
  } catch {
    console.error(`build: esbuild (${outfile}) failed`);
    process.exit(1);
  }
}

await bundle('dist/src/worker/main.js', BUNDLE);
// The command line (the bin, src/cli/bin.cts, runs it through start.cts): every command in
// one file, each command's code cache of its own. In dist/src/cli, one level below
// dist/src like the modules it holds, so their import.meta.url-relative paths still hold.
const CLI_BUNDLE = 'dist/src/cli/cli.cjs';
await bundle('dist/src/cli/main.js', CLI_BUNDLE, 'gen/pb-lean.js');
// main.ts's hashbang line, which esbuild keeps first, cannot stand inside the function
// that code-cache.cts wraps the bundle in.
writeFileSync(CLI_BUNDLE, readFileSync(CLI_BUNDLE, 'utf8').replace(/^#!.*\n/, ''));
// `pidfd-cr dump` on its own (start.cts runs it for that command): only the dump's code,
// with the image's protobuf messages only (docs/restore.md "Dump speed").
await bundle('dist/src/cli/dump-main.js', 'dist/src/cli/dump.cjs', 'gen/pb-image.js');
// The benchmark's lower bound of a worker (bench/skeleton-worker.ts), bundled the same way.
await bundle('dist/bench/skeleton-worker.js', 'dist/bench/skeleton.cjs');
