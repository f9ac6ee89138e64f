/**
 * The restore page: one self-contained HTML file (inline style, inline script, inline
 * SVG; nothing fetched). Statecharts laid out with ELK in Node (layout.ts) and drawn as
 * SVG (svg.ts) with what the restore visited, the timeline (timeline.ts), a scrubber
 * (page-script.ts) that shows every machine's state at a chosen moment, the failure (where
 * and why), and what the trace lacked.
 */
import { buildTimeline, type FailureMark, type Timeline } from './model.js';
import type { VizEvent } from './events.js';
import { machineGraph, type MachineName } from './graph.js';
import { layoutGraph } from './layout.js';
import { chartSvg, esc, fmtMs, type ChartStats } from './svg.js';
import { edgeCounts } from './highlight.js';
import { timelineSvg } from './timeline.js';
import { PAGE_SCRIPT } from './page-script.js';
import { toText } from './text.js';

export interface PageOptions {
  title: string;
  /** Problems found while reading the trace (read.ts). */
  warnings: string[];
}

const CSS = `
*{box-sizing:border-box}
body{margin:0;font:13px/1.4 system-ui,-apple-system,'Segoe UI','DejaVu Sans',sans-serif;color:#0f172a;background:#f8fafc}
header{padding:10px 20px 8px;background:#0f172a;color:#f8fafc;display:flex;flex-wrap:wrap;align-items:baseline;gap:6px 16px}
header h1{font-size:17px;margin:0;font-weight:650}
header .meta{color:#cbd5e1;font-size:12px}
.badge{display:inline-block;padding:1px 9px;border-radius:10px;font-weight:700;font-size:12px;letter-spacing:.03em}
.badge.ok{background:#16a34a;color:#fff}.badge.failed{background:#dc2626;color:#fff}.badge.cut{background:#f59e0b;color:#111}
main{padding:8px 20px 30px}
section{margin:8px 0}
h2{font-size:14px;margin:14px 0 6px;color:#334155}
.box{border-radius:6px;padding:8px 12px;margin:8px 0}
.failure-box{background:#fef2f2;border:1px solid #fca5a5;color:#7f1d1d}
.failure-box b{color:#991b1b}
.failure-box ul{margin:4px 0 0 18px;padding:0}
.warn-box{background:#fffbeb;border:1px solid #fcd34d;color:#78350f}
.warn-box ul{margin:4px 0 0 18px;padding:0}
.controls{position:sticky;top:0;z-index:5;background:#f8fafc;border-bottom:1px solid #e2e8f0;padding:6px 0;display:flex;align-items:center;gap:8px;flex-wrap:wrap}
.controls button{font:inherit;padding:2px 9px;border:1px solid #94a3b8;background:#fff;border-radius:4px;cursor:pointer}
.controls input[type=range]{flex:1 1 420px;min-width:300px}
#now-time{font-variant-numeric:tabular-nums;font-weight:700;min-width:90px}
#now-states{list-style:none;margin:0;padding:0;display:flex;flex-wrap:wrap;gap:4px 14px;font-size:12px;width:100%}
#now-states b{font-weight:600;color:#475569}
.scroll{overflow-x:auto;background:#fff;border:1px solid #e2e8f0;border-radius:6px}
#timeline{display:block}
#timeline text{fill:#0f172a;font-size:11px}
#timeline .lane-title{font-size:13px;font-weight:650}
#timeline .lane-sub{fill:#64748b}
#timeline .tick{fill:#475569;font-size:10.5px}
#timeline .phase-label{font-weight:650;fill:#0c4a6e;font-size:11.5px}
#timeline .proc-label{fill:#5b21b6;font-size:10px}
#timeline .zmark{fill:#b91c1c;font-weight:800}
#timeline .transfer-label{fill:#c2410c;font-weight:650;font-size:10.5px}
#timeline .slice.now rect{stroke:#0f172a;stroke-width:2}
#timeline .slice.open rect{stroke-dasharray:3 2}
#timeline{cursor:crosshair}
.charts{display:flex;flex-direction:column;gap:12px}
.chart-panel{background:#fff;border:1px solid #e2e8f0;border-radius:6px;padding:6px}
.chart-panel h2{margin:2px 4px 6px}
svg.chart{max-width:100%;height:auto;display:block;margin:0 auto}
.state rect{fill:#fff;stroke:#94a3b8;stroke-width:1}
.state.compound rect{fill:#f1f5f9;fill-opacity:.6}
.state.any rect{fill:#f8fafc}
.state .final-ring{fill:none}
.state text{fill:#94a3b8}
.state.visited text{fill:#0f172a}
.state .title{font-weight:650;font-size:12.5px}
.state .invoke,.state .entry,.state .internal{font-size:10.5px}
.state .stats{font-size:10.5px;fill:#1e40af;font-weight:600}
.state .who{font-size:10.5px;fill:#b91c1c;font-weight:700}
.state.current>rect:first-of-type{stroke:#b91c1c;stroke-width:3}
.edge path{fill:none;stroke:#cbd5e1;stroke-width:1.2}
.edge.visited path{stroke:#2563eb;stroke-width:2}
.elabel{fill:#94a3b8;font-size:10.5px;paint-order:stroke;stroke:#fff;stroke-width:3px;stroke-linejoin:round}
.elabel.hit{fill:#1d4ed8;font-weight:650}
table{border-collapse:collapse;font-size:12px;background:#fff}
th,td{border:1px solid #e2e8f0;padding:2px 8px;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.tables{display:flex;gap:16px;flex-wrap:wrap;align-items:flex-start}
pre{background:#fff;border:1px solid #e2e8f0;padding:8px;overflow-x:auto;font-size:11.5px}
.legend{display:flex;flex-wrap:wrap;gap:4px 16px;font-size:12px;color:#475569;margin:4px 0}
.sw{display:inline-block;width:14px;height:10px;border:1px solid #64748b;vertical-align:middle;margin-right:4px}
`;

/** The failure that explains the run: the coordinator's abort reason, else the first one. */
function mainFailure(tl: Timeline): FailureMark | undefined {
  return tl.failures.find((f) => f.lane === 'coordinator') ?? tl.failures[0];
}

function failureHtml(tl: Timeline): string {
  const main = mainFailure(tl);
  if (!main && tl.outcome !== 'failed') return '';
  const where = main
    ? `${main.lane === 'coordinator' ? 'the coordinator' : main.lane.replace('task:', 'task ')} went ${esc(main.from)} → <b>${esc(main.state)}</b> at +${fmtMs(main.time)}${main.phase ? ` in phase <b>${esc(main.phase)}</b>` : ''} on ${esc(main.event)}`
    : 'the coordinator ended in failed';
  const facts = main?.failure
    ? ` <code>${esc([main.failure.code, main.failure.syscall, main.failure.errno].filter(Boolean).join(' '))}</code>`
    : '';
  const others = tl.failures
    .filter((f) => f !== main)
    .map(
      (f) =>
        `<li>${esc(f.lane)} → ${esc(f.state)} at +${fmtMs(f.time)}${f.phase ? ` (phase ${esc(f.phase)})` : ''}: ${esc(f.message)}</li>`,
    );
  return `<section class="box failure-box" id="failure" data-failure-summary><b>Restore failed:</b> ${main ? esc(main.message) : ''}${facts}<br>${where}.${others.length ? `<ul>${others.join('')}</ul>` : ''}</section>`;
}

function chartStats(
  tl: Timeline,
  machine: MachineName,
  g: ReturnType<typeof machineGraph>,
): ChartStats {
  const states = new Map<string, { count: number; ms: number }>();
  for (const v of tl.visits)
    if (v.machine === machine) states.set(v.state, { count: v.count, ms: v.ms });
  return {
    states,
    edges: edgeCounts(
      g,
      tl.transitions.filter((t) => t.machine === machine),
    ),
  };
}

function visitsTable(tl: Timeline, machine: MachineName): string {
  const rows = tl.visits
    .filter((v) => v.machine === machine)
    .map(
      (v) =>
        `<tr><td>${esc(v.state)}</td><td class="num">${v.count}</td><td class="num">${fmtMs(v.ms)}</td></tr>`,
    );
  return `<table data-visits="${machine}"><tr><th>${machine} state</th><th>entered</th><th>time (all lanes)</th></tr>${rows.join('')}</table>`;
}

function transitionsTable(tl: Timeline): string {
  const rows = tl.transitions.map(
    (t) =>
      `<tr><td>${t.machine}</td><td>${esc(t.from)}</td><td>${esc(t.to)}</td><td>${esc(t.event)}</td><td class="num">${t.count}</td></tr>`,
  );
  return `<table data-transitions><tr><th>machine</th><th>from</th><th>to</th><th>event</th><th>times</th></tr>${rows.join('')}</table>`;
}

/** JSON for a `<script type="application/json">`: no `</script>` or `<!--` inside. */
const scriptJson = (v: unknown): string => JSON.stringify(v).replace(/</g, '\\u003c');

export async function renderTimelinePage(tl: Timeline, opts: PageOptions): Promise<string> {
  const graphs = { coordinator: machineGraph('coordinator'), task: machineGraph('task') };
  const [coordLaid, taskLaid] = await Promise.all([
    layoutGraph(graphs.coordinator),
    layoutGraph(graphs.task),
  ]);
  const tlSvg = tl.lanes.length > 0 ? timelineSvg(tl) : undefined;
  const tasks = tl.lanes.filter((l) => l.machine === 'task').length;
  const temps = tl.processes.filter((p) => p.role === 'temp').length;
  const zombies = tl.processes.filter((p) => p.role === 'zombie').length;
  const failed = tl.outcome === 'failed' || tl.outcome === 'aborting' || tl.failures.length > 0;
  const cut = !['done', 'failed'].includes(tl.outcome);
  const badge = failed
    ? '<span class="badge failed" data-outcome="failed">FAILED</span>'
    : cut
      ? '<span class="badge cut" data-outcome="incomplete">INCOMPLETE</span>'
      : '<span class="badge ok" data-outcome="ok">RESTORED</span>';
  const main = mainFailure(tl);
  const initial = main ? main.time : tl.duration;
  const data = {
    duration: tl.duration,
    initial,
    scale: tlSvg?.scale ?? { ts: [0, tl.duration || 1], xs: [0, 1] },
    times: [...new Set(tl.events.map((e) => e.time))].sort((a, b) => a - b),
    lanes: tl.lanes.map((l) => ({
      id: l.id,
      machine: l.machine,
      short: l.machine === 'coordinator' ? 'coordinator' : `task ${l.task}`,
      slices: l.slices.map((s) => [s.state, s.start, s.end]),
    })),
  };
  const warnings = [...opts.warnings, ...tl.warnings];
  const meta = [
    tl.run ? `run ${esc(tl.run)}` : '',
    `started ${new Date(tl.t0).toISOString().replace('T', ' ').replace('Z', ' UTC')}`,
    `${fmtMs(tl.duration)}`,
    `${tasks} task${tasks === 1 ? '' : 's'}`,
    `${tl.transfers.length} fd transfer${tl.transfers.length === 1 ? '' : 's'}`,
    `${temps} temporary process${temps === 1 ? '' : 'es'}`,
    tl.completed ? `${zombies} zombie${zombies === 1 ? '' : 's'}` : '',
    tl.ignoredFrames ? `${tl.ignoredFrames} ignored frame(s)` : '',
    tl.completed ? 'trace v1 (completed)' : 'trace v1 (state changes only)',
  ].filter(Boolean);
  const swatch = (c: string, label: string) =>
    `<span><span class="sw" style="background:${c}"></span>${label}</span>`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<title>${esc(opts.title)}: ${failed ? 'failed' : cut ? 'incomplete' : 'restored'}</title>
<style>${CSS}</style></head>
<body>
<header><h1>${esc(opts.title)}</h1>${badge}<span class="meta">${meta.join(' · ')}</span></header>
<main>
${failureHtml(tl)}
${warnings.length ? `<section class="box warn-box" id="warnings" data-warnings="${warnings.length}"><b>What this trace lacks or could not be drawn:</b><ul>${warnings.map((w) => `<li>${esc(w)}</li>`).join('')}</ul></section>` : ''}
<section class="controls" aria-label="time">
<button id="step-first" title="start">|◀</button><button id="step-prev" title="previous event">◀ event</button>
<input type="range" id="scrubber" min="0" max="${tl.duration}" step="any" value="${initial}" aria-label="moment of the restore">
<button id="step-next" title="next event">event ▶</button><button id="step-last" title="end">▶|</button>
<span id="now-time"></span>
<ul id="now-states"></ul>
</section>
<section><div class="legend">${[
    swatch('#86efac', 'open-alive'),
    swatch('#c4b5fd', 'become-creator'),
    swatch('#fdba74', 'sending'),
    swatch('#93c5fd', 'wait-for-fd'),
    swatch('#fca5a5', 'kill-temp'),
    swatch('#5eead4', 'finalizing'),
    swatch('#fde047', 'reporting / verify'),
    '<span><svg width="26" height="10"><path d="M1,5 L20,5" stroke="#c2410c" stroke-width="2"/><path d="M18,1 L25,5 L18,9z" fill="#c2410c"/></svg> fd transfer</span>',
    '<span><span class="sw" style="background:repeating-linear-gradient(45deg,#7c3aed 0 2px,#ede9fe 2px 6px)"></span>temporary process</span>',
    '<span><span class="sw" style="background:#fecaca;border-color:#b91c1c"></span>zombie (Z)</span>',
    '<span style="color:#dc2626">✕ failure</span>',
    '<span>bands: phases (axis: each phase ≥ 120 px, labels are real times)</span>',
  ].join('')}</div>
<div class="scroll">${tlSvg?.svg ?? '<p>No lanes: the trace has no state changes.</p>'}</div></section>
<section class="charts">
<div class="chart-panel"><h2>coordinator machine</h2>${chartSvg(coordLaid, chartStats(tl, 'coordinator', graphs.coordinator))}</div>
<div class="chart-panel"><h2>task machine (${tasks} task${tasks === 1 ? '' : 's'})</h2>${chartSvg(taskLaid, chartStats(tl, 'task', graphs.task))}</div>
</section>
<section><h2>States and transitions this restore went through</h2><div class="tables">${visitsTable(tl, 'coordinator')}${visitsTable(tl, 'task')}${transitionsTable(tl)}</div></section>
<section><details><summary>All ${tl.events.length} events (the <code>--trace</code> timeline)</summary><pre>${esc(toText(tl.events))}</pre></details></section>
</main>
<script type="application/json" id="viz-data">${scriptJson(data)}</script>
<script>${PAGE_SCRIPT}</script>
</body></html>
`;
}

/** The page of a run's events (the `--viz` of restore and demo). */
export async function renderHtml(events: readonly VizEvent[], opts: PageOptions): Promise<string> {
  return renderTimelinePage(buildTimeline(events, []), opts);
}
