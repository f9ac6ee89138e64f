/**
 * The timeline SVG: one lane per machine (coordinator first, then one per task), state
 * slices coloured by state, phases as bands behind the lanes, fd transfers as arrows from
 * the sender's lane to the receiver's, temporary processes and zombies as bars under
 * their lane, failures marked. Short phases would be slivers on a linear axis (the demo
 * spends most of its time registering), so the axis is piecewise linear: each span
 * between phase boundaries gets at least MIN_SPAN_PX; tick labels are the real times.
 */
import { stateColor } from './colors.js';
import type { Lane, Timeline } from './model.js';
import { esc, fmtMs } from './svg.js';

export const TIMELINE_WIDTH = 1220;
const LABEL_W = 200;
const PLOT_W = TIMELINE_WIDTH - LABEL_W - 20;
const AXIS_H = 40;
const BAR_H = 22;
const SUB_H = 11;
const MIN_SPAN_PX = 120;
const CHAR = 6.6;

export interface Scale {
  /** Breakpoints in ms and their x (px, from the plot's left edge). */
  ts: number[];
  xs: number[];
}

/** The piecewise linear axis of `tl`. */
export function makeScale(tl: Timeline, width = PLOT_W): Scale {
  const d = Math.max(tl.duration, 1e-3);
  const points = [0, ...tl.phases.flatMap((p) => [p.start, p.end]), d];
  const ts = [...new Set(points.map((t) => Math.min(Math.max(t, 0), d)))].sort((a, b) => a - b);
  const spans = ts.slice(1).map((t, i) => t - ts[i]!);
  // Proportional widths, raised to the minimum, the rest shared proportionally (2 rounds).
  let fixed = new Set<number>();
  let widths = spans.map((s) => (s / d) * width);
  for (let round = 0; round < 3; round++) {
    fixed = new Set(widths.map((w, i) => (w < MIN_SPAN_PX ? i : -1)).filter((i) => i >= 0));
    const free = spans.reduce((n, s, i) => (fixed.has(i) ? n : n + s), 0);
    const left = Math.max(0, width - fixed.size * MIN_SPAN_PX);
    widths = spans.map((s, i) => (fixed.has(i) ? MIN_SPAN_PX : free > 0 ? (s / free) * left : 0));
  }
  const total = widths.reduce((a, b) => a + b, 0) || 1;
  const xs = [0];
  for (const w of widths) xs.push(xs[xs.length - 1]! + (w / total) * width);
  return { ts, xs };
}

export function xOf(scale: Scale, t: number): number {
  const { ts, xs } = scale;
  if (t <= ts[0]!) return xs[0]!;
  for (let i = 1; i < ts.length; i++) {
    if (t <= ts[i]!) {
      const span = ts[i]! - ts[i - 1]!;
      return xs[i - 1]! + (span > 0 ? ((t - ts[i - 1]!) / span) * (xs[i]! - xs[i - 1]!) : 0);
    }
  }
  return xs[xs.length - 1]!;
}

interface LaneRow {
  lane: Lane;
  y: number;
  height: number;
  /** Sub-row of each process bar drawn under this lane. */
  subRows: Map<number, number>;
}

function laneTitle(lane: Lane): [string, string] {
  if (lane.machine === 'coordinator') return ['coordinator', `pid ${lane.pids.join(', ') || '?'}`];
  const pid = lane.pids.join(', ') || 'not registered';
  const exit = lane.exit ? `, exit status ${lane.exit.waitStatus ?? '?'}` : '';
  return [`task ${lane.task}`, `restored pid ${pid}${exit}`];
}

export function timelineSvg(tl: Timeline): {
  svg: string;
  scale: Scale;
  lanes: Array<{ id: string; y: number; height: number }>;
} {
  const scale = makeScale(tl);
  const X = (t: number) => LABEL_W + xOf(scale, t);
  // Process bars: greedy sub-rows so that bars of one lane never overlap.
  const rows: LaneRow[] = [];
  let y = AXIS_H + 4;
  for (const lane of tl.lanes) {
    const bars = tl.processes.map((p, i) => ({ p, i })).filter(({ p }) => p.lane === lane.id);
    const ends: number[] = [];
    const subRows = new Map<number, number>();
    for (const { p, i } of bars.sort((a, b) => a.p.start - b.p.start)) {
      let r = ends.findIndex((end) => end < X(p.start) - 4);
      if (r < 0) r = ends.length;
      ends[r] = X(p.end ?? tl.duration) + textW(`${p.role} ${p.label}`);
      subRows.set(i, r);
    }
    const height = 12 + BAR_H + ends.length * SUB_H + 6;
    rows.push({ lane, y, height, subRows });
    y += height;
  }
  const bottom = y + 4;
  const H = bottom + 8;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" id="timeline" viewBox="0 0 ${TIMELINE_WIDTH} ${H}" width="${TIMELINE_WIDTH}" height="${H}" font-family="system-ui, -apple-system, 'Segoe UI', 'DejaVu Sans', sans-serif" font-size="12">`,
  );
  out.push(
    '<defs><marker id="tarrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#c2410c"/></marker>' +
      '<pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#ede9fe"/><line x1="0" y1="0" x2="0" y2="6" stroke="#7c3aed" stroke-width="2"/></pattern></defs>',
  );
  // Phase bands and the axis.
  tl.phases.forEach((p, i) => {
    const x0 = X(p.start);
    const x1 = X(p.end);
    out.push(
      `<g class="phase" data-phase="${esc(p.name)}"><rect x="${x0.toFixed(1)}" y="${AXIS_H - 22}" width="${Math.max(1, x1 - x0).toFixed(1)}" height="${(bottom - AXIS_H + 22).toFixed(1)}" fill="${i % 2 ? '#f1f5f9' : '#e0f2fe'}" opacity="0.8"/>` +
        `<text class="phase-label" x="${((x0 + x1) / 2).toFixed(1)}" y="${AXIS_H - 9}" text-anchor="middle">${esc(fit(p.name, x1 - x0))}</text><title>phase ${esc(p.name)}: ${fmtMs(p.end - p.start)}</title></g>`,
    );
  });
  out.push(
    `<line x1="${LABEL_W}" y1="${AXIS_H}" x2="${LABEL_W + PLOT_W}" y2="${AXIS_H}" stroke="#64748b"/>`,
  );
  // Tick labels at least 60 px apart; the last one (the end) always shown.
  const ticks: number[] = [];
  scale.ts.forEach((t, i) => {
    const x = X(t);
    const last = i === scale.ts.length - 1;
    while (last && ticks.length > 1 && x - X(ticks[ticks.length - 1]!) < 90) ticks.pop();
    if (last || ticks.length === 0 || x - X(ticks[ticks.length - 1]!) >= 60) ticks.push(t);
  });
  ticks.forEach((t, i) => {
    const x = X(t);
    // The first and last labels stay inside the plot.
    const anchor = i === 0 ? 'start' : i === ticks.length - 1 ? 'end' : 'middle';
    out.push(
      `<line x1="${x.toFixed(1)}" y1="${AXIS_H - 4}" x2="${x.toFixed(1)}" y2="${AXIS_H + 3}" stroke="#64748b"/><text class="tick" x="${x.toFixed(1)}" y="${AXIS_H - 26}" text-anchor="${anchor}">${esc(tickLabel(t))}</text>`,
    );
  });
  // Lanes.
  for (const row of rows) {
    const { lane } = row;
    const [title, sub] = laneTitle(lane);
    const barY = row.y + 6;
    out.push(`<g class="lane" data-lane="${esc(lane.id)}" data-machine="${lane.machine}">`);
    out.push(
      `<line x1="0" y1="${(row.y + row.height).toFixed(1)}" x2="${TIMELINE_WIDTH}" y2="${(row.y + row.height).toFixed(1)}" stroke="#e2e8f0"/>`,
    );
    out.push(`<text class="lane-title" x="8" y="${(barY + 10).toFixed(1)}">${esc(title)}</text>`);
    out.push(`<text class="lane-sub" x="8" y="${(barY + 24).toFixed(1)}">${esc(sub)}</text>`);
    for (const s of lane.slices) {
      const x0 = X(s.start);
      const x1 = Math.max(X(s.end), x0 + 2);
      const leaf = s.state;
      // The phase bands name the phase: the coordinator's slices need not repeat "phases.".
      const shown = lane.machine === 'coordinator' ? leaf.replace(/^phases\./, '') : leaf;
      out.push(
        `<g class="slice${s.open ? ' open' : ''}" data-slice="${esc(leaf)}" data-start="${s.start.toFixed(3)}" data-end="${s.end.toFixed(3)}"><rect x="${x0.toFixed(1)}" y="${barY}" width="${(x1 - x0).toFixed(1)}" height="${BAR_H}" rx="3" fill="${stateColor(leaf)}" stroke="#475569" stroke-width="0.5"/>` +
          `<text x="${(x0 + 4).toFixed(1)}" y="${barY + 15}">${esc(fit(shown, x1 - x0 - 6))}</text><title>${esc(`${lane.id}: ${leaf} (entered on ${s.event}) for ${fmtMs(s.end - s.start)}${s.open ? ', still there when the trace ends' : ''}`)}</title></g>`,
      );
    }
    // Temporary processes and zombies.
    tl.processes.forEach((p, i) => {
      if (p.lane !== lane.id) return;
      const r = row.subRows.get(i) ?? 0;
      const by = barY + BAR_H + 5 + r * SUB_H;
      const x0 = X(p.start);
      const x1 = Math.max(X(p.end ?? tl.duration), x0 + 3);
      const fill = p.role === 'temp' ? 'url(#hatch)' : '#fecaca';
      const label = `${p.role === 'temp' ? 'temp' : 'zombie'}${p.pid ? ` ${p.pid}` : ''} ${p.label}`;
      // After the bar, or inside its end when that would leave the picture (a zombie is
      // reaped at teardown, at the right edge).
      const inside = x1 + 4 + textW(label) > TIMELINE_WIDTH;
      const lx = inside ? x1 - 4 : x1 + 4;
      out.push(
        `<g class="proc" data-process="${p.role}"><rect x="${x0.toFixed(1)}" y="${by.toFixed(1)}" width="${(x1 - x0).toFixed(1)}" height="${SUB_H - 3}" fill="${fill}" stroke="${p.role === 'temp' ? '#7c3aed' : '#b91c1c'}" stroke-width="0.8"${p.end === undefined ? ' stroke-dasharray="3 2"' : ''}/>` +
          (p.role === 'zombie'
            ? `<text class="zmark" x="${(x0 - 2).toFixed(1)}" y="${(by + 8).toFixed(1)}" text-anchor="end">Z</text>`
            : '') +
          `<text class="proc-label" x="${lx.toFixed(1)}" y="${(by + 8).toFixed(1)}"${inside ? ' text-anchor="end"' : ''}>${esc(label)}</text><title>${esc(`${label}: ${fmtMs(p.start)} → ${p.end !== undefined ? fmtMs(p.end) : 'no exit in the trace'}${p.waitStatus !== undefined ? `, wait status ${p.waitStatus}` : ''}`)}</title></g>`,
      );
    });
    if (lane.exit)
      out.push(
        `<g class="exit"><line x1="${X(lane.exit.time).toFixed(1)}" y1="${barY - 3}" x2="${X(lane.exit.time).toFixed(1)}" y2="${barY + BAR_H + 3}" stroke="#0f172a" stroke-width="2"/><title>process exit${lane.exit.waitStatus !== undefined ? `, wait status ${lane.exit.waitStatus}` : ''}</title></g>`,
      );
    out.push('</g>');
  }
  // fd transfers: arrows between lanes.
  const rowOf = new Map(rows.map((r) => [r.lane.id, r]));
  for (const t of tl.transfers) {
    const a = rowOf.get(`task:${t.sender}`)!;
    const b = rowOf.get(`task:${t.receiver}`)!;
    const x0 = X(t.sendTime ?? t.recvTime ?? 0);
    const x1 = X(t.recvTime ?? t.sendTime ?? 0);
    const y0 = a.y + 6 + BAR_H / 2;
    const y1 = b.y + 6 + (b.y > a.y ? 0 : BAR_H);
    const bend = 24 + Math.abs(y1 - y0) * 0.15;
    const d = `M${x0.toFixed(1)},${y0.toFixed(1)} C${(x0 + bend).toFixed(1)},${y0.toFixed(1)} ${(x1 + bend).toFixed(1)},${((y0 + y1) / 2).toFixed(1)} ${x1.toFixed(1)},${y1.toFixed(1)}`;
    const what = `fd transfer ${t.id}: task ${t.sender} → task ${t.receiver}, files ${t.files.join(', ') || '?'} → fds ${t.fds.join(', ') || '?'}${t.phase ? ` (phase ${t.phase})` : ''}`;
    out.push(
      `<g class="transfer" data-transfer-arrow="${esc(t.id)}"><path d="${d}" fill="none" stroke="#c2410c" stroke-width="2" marker-end="url(#tarrow)"${t.sendTime === undefined || t.recvTime === undefined ? ' stroke-dasharray="4 3"' : ''}/>` +
        `<circle cx="${x0.toFixed(1)}" cy="${y0.toFixed(1)}" r="3" fill="#c2410c"/><text class="transfer-label" x="${(x1 + 6).toFixed(1)}" y="${(y1 - 3).toFixed(1)}">${esc(t.fds.length ? `fd ${t.fds.join(',')}` : 'fds')}</text><title>${esc(what)}</title></g>`,
    );
  }
  // Failures.
  for (const f of tl.failures) {
    const r = rowOf.get(f.lane);
    if (!r) continue;
    const x = X(f.time);
    const cy = r.y + 6 + BAR_H / 2;
    out.push(
      `<g class="failure" data-failure="${esc(f.lane)}"><circle cx="${x.toFixed(1)}" cy="${cy.toFixed(1)}" r="8" fill="#dc2626" stroke="#fff" stroke-width="1.5"/><text x="${x.toFixed(1)}" y="${(cy + 4).toFixed(1)}" text-anchor="middle" fill="#fff" font-weight="700">✕</text><title>${esc(`${f.lane} → ${f.state} at ${fmtMs(f.time)}${f.phase ? ` (phase ${f.phase})` : ''}: ${f.message}`)}</title></g>`,
    );
  }
  out.push(
    `<line id="cursor" x1="${LABEL_W}" y1="${AXIS_H - 4}" x2="${LABEL_W}" y2="${bottom}" stroke="#0f172a" stroke-width="1.5" stroke-dasharray="4 3"/>`,
  );
  out.push('</svg>');
  return {
    svg: out.join('\n'),
    scale: { ts: scale.ts, xs: scale.xs.map((x) => x + LABEL_W) },
    lanes: rows.map((r) => ({ id: r.lane.id, y: r.y, height: r.height })),
  };
}

const textW = (s: string): number => s.length * CHAR + 8;

/** `s`, cut with an ellipsis to fit `px`. */
function fit(s: string, px: number): string {
  const n = Math.floor(px / CHAR);
  if (n >= s.length) return s;
  if (n < 3) return '';
  return s.slice(0, n - 1) + '…';
}

const tickLabel = (t: number): string => (t === 0 ? '0' : `+${fmtMs(t)}`);
