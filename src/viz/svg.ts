/**
 * SVG of a laid-out statechart (layout.ts). Every state is a `<g data-state-node>` (its
 * machine and trace state path in `data-machine` / `data-state`), every drawn edge a
 * `<g data-edge>`; visited ones carry the class `visited` and their counts and time. The
 * page's script marks the states of the chosen moment (`current`) and fills the `who` line.
 */
import { stateColor } from './colors.js';
import { LINE_PX, type LaidGraph } from './layout.js';

export const esc = (s: string): string =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

export const fmtMs = (ms: number): string =>
  ms >= 1000
    ? `${(ms / 1000).toFixed(2)} s`
    : ms >= 10
      ? `${ms.toFixed(0)} ms`
      : `${ms.toFixed(1)} ms`;

export interface ChartStats {
  /** state path → visits and time (ms). */
  states: Map<string, { count: number; ms: number }>;
  /** graph edge id → count. */
  edges: Map<string, number>;
}

/** The `<svg>` of one machine; `stats` marks what the restore visited. */
export function chartSvg(laid: LaidGraph, stats?: ChartStats): string {
  const m = laid.graph.machine;
  const out: string[] = [];
  const w = Math.ceil(laid.width);
  const h = Math.ceil(laid.height);
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" class="chart" data-chart="${m}" viewBox="0 0 ${w} ${h}" width="${w}" height="${h}" font-family="system-ui, -apple-system, 'Segoe UI', 'DejaVu Sans', sans-serif" font-size="12">`,
  );
  out.push(
    `<defs><marker id="arrow-${m}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="context-stroke"/></marker></defs>`,
  );
  // Compound states first (behind), then leaves, then edges on top.
  const nodes = [...laid.nodes].sort((a, b) => Number(b.compound) - Number(a.compound));
  for (const n of nodes) {
    const path = n.node.path;
    const s = stats?.states.get(path);
    const cls = ['state', n.compound ? 'compound' : 'leaf', n.node.type, s ? 'visited' : '']
      .filter(Boolean)
      .join(' ');
    out.push(
      `<g class="${cls}" data-state-node="${esc(n.node.id)}" data-machine="${m}" data-state="${esc(path)}"${s ? ` data-visits="${s.count}" data-ms="${s.ms.toFixed(3)}"` : ''}>`,
    );
    out.push(
      `<title>${esc(`${m} ${path}`)}${s ? esc(`: entered ${s.count}×, ${fmtMs(s.ms)} in total`) : ': not visited'}</title>`,
    );
    const rx = n.node.type === 'any' ? 4 : 8;
    out.push(
      `<rect x="${n.x.toFixed(1)}" y="${n.y.toFixed(1)}" width="${n.width.toFixed(1)}" height="${n.height.toFixed(1)}" rx="${rx}"${n.node.type === 'any' ? ' stroke-dasharray="5 3"' : ''}${s && !n.compound ? ` style="fill:${stateColor(path)}"` : ''}/>`,
    );
    if (n.node.type === 'final')
      out.push(
        `<rect class="final-ring" x="${(n.x + 3).toFixed(1)}" y="${(n.y + 3).toFixed(1)}" width="${(n.width - 6).toFixed(1)}" height="${(n.height - 6).toFixed(1)}" rx="6"/>`,
      );
    let y = n.y + LINE_PX + 3;
    for (const l of n.lines) {
      out.push(
        `<text class="${l.kind}" x="${(n.x + 10).toFixed(1)}" y="${y.toFixed(1)}">${esc(l.text)}</text>`,
      );
      y += LINE_PX;
    }
    out.push(
      `<text class="stats" x="${(n.x + 10).toFixed(1)}" y="${y.toFixed(1)}">${s ? esc(`${s.count}× · ${fmtMs(s.ms)}`) : ''}</text>`,
    );
    y += LINE_PX;
    out.push(`<text class="who" x="${(n.x + 10).toFixed(1)}" y="${y.toFixed(1)}"></text>`);
    out.push('</g>');
  }
  for (const e of laid.edges) {
    const count = e.edges.reduce((n, x) => n + (stats?.edges.get(x.id) ?? 0), 0);
    const ids = e.edges.map((x) => x.id).join(' ');
    out.push(
      `<g class="edge${count > 0 ? ' visited' : ''}" data-edge="${esc(ids)}" data-from="${esc(e.source)}" data-to="${esc(e.target)}"${count > 0 ? ` data-count="${count}"` : ''}>`,
    );
    out.push(`<path d="${e.d}" marker-end="url(#arrow-${m})"/>`);
    e.label.lines.forEach((line, i) => {
      const c = stats?.edges.get(e.edges[i]!.id) ?? 0;
      out.push(
        `<text class="elabel${c > 0 ? ' hit' : ''}" x="${(e.label.x + 3).toFixed(1)}" y="${(e.label.y + 11 + i * (LINE_PX - 2)).toFixed(1)}">${esc(line)}${c > 0 ? ` ×${c}` : ''}</text>`,
      );
    });
    out.push('</g>');
  }
  out.push('</svg>');
  return out.join('\n');
}
