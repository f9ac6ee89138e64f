/**
 * `pidfd-cr machines [--format mermaid|dot|json|svg] [--machine task|coordinator|all]`:
 * the statecharts drawn from the machine definitions (src/viz/graph.ts). docs/machines.md
 * holds the mermaid output (scripts/docs-machines.mjs regenerates it; a test checks it).
 */
import { UsageError } from '../../errors.js';
import { parseCommandArgs } from '../args.js';
import { machineGraph, toDot, toMermaid, type MachineName } from '../../viz/graph.js';
import { layoutGraph } from '../../viz/layout.js';
import { chartSvg } from '../../viz/svg.js';

const HELP = `usage: pidfd-cr machines [--format mermaid|dot|json|svg] [--machine task|coordinator|all]

Prints the statecharts of the restore's two XState machines, read from their definitions:
every state, nested state, transition (event, guard, actions), invoked actor.
  -f, --format F    mermaid (default; stateDiagram-v2), dot (Graphviz), json, svg (laid
                    out with ELK)
  -m, --machine M   task, coordinator or all (default)
`;

const FORMATS = ['mermaid', 'dot', 'json', 'svg'];

export async function run(argv: string[]): Promise<number> {
  const values = parseCommandArgs('machines', argv, {
    format: { type: 'string', short: 'f' },
    machine: { type: 'string', short: 'm' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const format = (values.format as string | undefined) ?? 'mermaid';
  if (!FORMATS.includes(format))
    throw new UsageError(`machines: --format must be mermaid, dot, json or svg, got '${format}'`);
  const which = (values.machine as string | undefined) ?? 'all';
  if (!['task', 'coordinator', 'all'].includes(which))
    throw new UsageError(`machines: --machine must be task, coordinator or all, got '${which}'`);
  process.stdout.write(await machinesOutput(format, which as MachineName | 'all'));
  return 0;
}

/** The command's output (also what docs/machines.md must contain, for mermaid). */
export async function machinesOutput(format: string, which: MachineName | 'all'): Promise<string> {
  const names: MachineName[] = which === 'all' ? ['coordinator', 'task'] : [which];
  const graphs = names.map(machineGraph);
  if (format === 'json')
    return JSON.stringify(which === 'all' ? graphs : graphs[0], null, 2) + '\n';
  if (format === 'svg') {
    const svgs = await Promise.all(graphs.map(async (g) => chartSvg(await layoutGraph(g))));
    if (svgs.length === 1)
      return svgs[0]!.replace(/(<svg[^>]*>)/, `$1<style>${CHART_CSS}</style>`) + '\n';
    return (
      // Two charts: one document, side by side, each in its nested <svg>.
      combine(svgs) + '\n'
    );
  }
  const render = format === 'dot' ? toDot : toMermaid;
  if (graphs.length === 1) return render(graphs[0]!);
  // Two diagrams: each under a comment naming it (mermaid %%, dot //).
  const comment = format === 'mermaid' ? '%%' : '//';
  return graphs.map((g) => `${comment} ${g.id} machine\n${render(g)}`).join('\n');
}

function combine(svgs: string[]): string {
  let x = 0;
  let h = 0;
  const parts = svgs.map((s) => {
    const m = /viewBox="0 0 ([0-9.]+) ([0-9.]+)"/.exec(s)!;
    const [w, hh] = [Number(m[1]), Number(m[2])];
    const part = s.replace('<svg ', `<svg x="${x}" y="0" `);
    x += w + 20;
    h = Math.max(h, hh);
    return part;
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${x} ${h}" width="${x}" height="${h}"><style>${CHART_CSS}</style>${parts.join('\n')}</svg>`;
}

/** Standalone styles of a chart (the page has its own). */
export const CHART_CSS =
  '.state rect{fill:#fff;stroke:#64748b}.state.compound rect{fill:#f1f5f9}.state .final-ring{fill:none}.state .title{font-weight:bold}.state .invoke,.state .entry,.state .internal{font-size:10.5px;fill:#334155}.edge path{fill:none;stroke:#64748b}.elabel{font-size:10.5px;fill:#1e293b}';
