/**
 * docs/machines.md holds the output of `pidfd-cr machines --format mermaid` between
 * marker comments, one block per machine. `updateMachinesDoc` rewrites those blocks
 * (scripts/docs-machines.mjs, `npm run docs:machines`); a unit test fails when the file
 * differs from what it would write.
 */
import { PcrError } from '../errors.js';
import { machineGraph, toMermaid, type MachineName } from './graph.js';

const begin = (m: MachineName) =>
  `<!-- BEGIN GENERATED: pidfd-cr machines --format mermaid --machine ${m} (npm run docs:machines) -->`;
const END = '<!-- END GENERATED -->';

/** One generated block: the markers and a mermaid fence. */
export function machineBlock(m: MachineName): string {
  return `${begin(m)}\n\n\`\`\`mermaid\n${toMermaid(machineGraph(m))}\`\`\`\n\n${END}`;
}

/**
 * `doc` with each machine's generated block replaced by a fresh one; a block that is not
 * there yet is added under the machine's heading (`## Task machine`, `## Coordinator machine`).
 */
export function updateMachinesDoc(doc: string): string {
  let out = doc;
  for (const m of ['task', 'coordinator'] as const) {
    const start = out.indexOf(begin(m));
    if (start >= 0) {
      const end = out.indexOf(END, start);
      if (end < 0)
        throw new PcrError(
          'PCR_ERR_INTERNAL',
          `docs/machines.md: the ${m} block has no end marker`,
        );
      out = out.slice(0, start) + machineBlock(m) + out.slice(end + END.length);
    } else {
      const heading = new RegExp(
        `^## ${m === 'task' ? 'Task' : 'Coordinator'} machine.*$`,
        'm',
      ).exec(out);
      if (!heading)
        throw new PcrError('PCR_ERR_INTERNAL', `docs/machines.md: no heading for the ${m} machine`);
      const at = heading.index + heading[0].length;
      out = `${out.slice(0, at)}\n\n${machineBlock(m)}${out.slice(at)}`;
    }
  }
  return out;
}
