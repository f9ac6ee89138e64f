// Fails when a module imports from a room above its own (docs/architecture.md "Rooms").
// Reads the TypeScript sources' relative imports; no build needed. Run by `npm run lint`.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

/** Low to high: a room may import its own files and rooms of a lower rank only. */
const RANKS = [
  ['src/errors.ts', 'src/text.ts', 'src/log.ts'],
  ['native'],
  ['src/model'],
  ['src/procfs'],
  ['src/sys'],
  ['src/kinds'],
  ['src/image'],
  ['src/dump', 'src/plan'],
  ['src/protocol'],
  ['src/check'],
  ['src/verify'],
  ['src/machines'],
  ['src/launch'],
  ['src/actors'],
  ['src/worker', 'src/coordinator'],
  ['src/restore', 'src/viz'],
  ['src/swrk'],
  ['src/testing'],
  ['src/cli', 'src/index.ts'],
];
const ROOT = resolve(dirname(new URL(import.meta.url).pathname), '..');
const roomOf = (file) => {
  const rel = relative(ROOT, file);
  for (let rank = 0; rank < RANKS.length; rank++) {
    for (const room of RANKS[rank]) {
      if (rel === room || rel.startsWith(room + '/')) return { room, rank };
    }
  }
  return undefined;
};
const walk = (dir) =>
  readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? walk(path) : /\.c?ts$/.test(name) ? [path] : [];
  });

const problems = [];
const graph = new Map();
for (const file of [...walk(join(ROOT, 'src')), ...walk(join(ROOT, 'native'))]) {
  const from = roomOf(file);
  if (!from) {
    problems.push(`${relative(ROOT, file)}: in no room (add it to scripts/check-layers.mjs)`);
    continue;
  }
  const text = readFileSync(file, 'utf8');
  const deps = [];
  for (const m of text.matchAll(/(?:from|import)\s*\(?\s*'(\.\.?\/[^']+)'/g)) {
    const target = resolve(dirname(file), m[1])
      .replace(/\.js$/, '.ts')
      .replace(/\.cjs$/, '.cts');
    if (target.includes('/gen/')) continue; // generated protobuf code
    deps.push(target);
    const to = roomOf(target);
    if (to && (to.rank > from.rank || (to.rank === from.rank && to.room !== from.room))) {
      const why = to.rank > from.rank ? 'a higher room' : 'a peer room';
      problems.push(
        `${relative(ROOT, file)} imports ${relative(ROOT, target)}: ${from.room} may not import ${to.room} (${why})`,
      );
    }
  }
  graph.set(file, deps);
}
// Cycles between files (within a room too).
const state = new Map();
const stack = [];
const visit = (f) => {
  state.set(f, 1);
  stack.push(f);
  for (const d of graph.get(f) ?? []) {
    if (state.get(d) === 1) {
      const cycle = stack
        .slice(stack.indexOf(d))
        .concat(d)
        .map((x) => relative(ROOT, x));
      problems.push(`import cycle: ${cycle.join(' -> ')}`);
    } else if (!state.has(d) && graph.has(d)) visit(d);
  }
  stack.pop();
  state.set(f, 2);
};
for (const f of graph.keys()) if (!state.has(f)) visit(f);

if (problems.length > 0) {
  for (const p of problems) console.error(`check-layers: ${p}`);
  process.exit(1);
}
console.log(`check-layers: ${graph.size} modules, imports only point down, no cycles`);
