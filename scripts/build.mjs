// Build: protobuf static code from proto/ into gen/, then tsc into dist/, then the
// generated JS next to the compiled code. Node 20 cannot run .ts, so this is required.
import { execFileSync } from 'node:child_process';
import { mkdirSync, copyFileSync, chmodSync, readdirSync, rmSync } from 'node:fs';

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
run(bin('pbjs'), [
  '-t',
  'static-module',
  '-w',
  'es6',
  '--es6',
  '--no-beautify',
  '-d',
  '-o',
  'gen/pb.js',
  ...protos,
]);
rmSync('dist', { recursive: true, force: true });
run(bin('tsc'), ['-p', '.']);
mkdirSync('dist/gen', { recursive: true });
copyFileSync('gen/pb.js', 'dist/gen/pb.js');
chmodSync('dist/src/cli/main.js', 0o755);
