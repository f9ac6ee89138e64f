/** One colour per state, the same on the timeline and the statecharts. */
const NAMED: Record<string, string> = {
  registering: '#cbd5e1',
  spawning: '#cbd5e1',
  ready: '#e2e8f0',
  'open-alive': '#86efac',
  phases: '#86efac',
  'phases.open-alive': '#86efac',
  'become-creator': '#c4b5fd',
  'spawning-temp': '#c4b5fd',
  opening: '#a78bfa',
  created: '#a78bfa',
  sending: '#fdba74',
  'wait-for-fd': '#93c5fd',
  'phases.dead': '#93c5fd',
  'kill-temp': '#fca5a5',
  'wait-for-temp-exit': '#fecaca',
  'phases.kill-temp': '#fca5a5',
  finalizing: '#5eead4',
  'phases.finalize': '#5eead4',
  reporting: '#fde047',
  'phases.verify': '#fde047',
  comparing: '#fde047',
  holding: '#d9f99d',
  'tearing-down': '#d1d5db',
  aborting: '#f87171',
  done: '#9ca3af',
  failed: '#ef4444',
};

const FALLBACK = ['#f9a8d4', '#a5b4fc', '#67e8f9', '#fcd34d', '#bef264', '#fda4af'];

/** The colour of a trace state path ("become-creator.opening", "phases.dead"). */
export function stateColor(state: string): string {
  if (NAMED[state]) return NAMED[state]!;
  const leaf = state.split('.').pop()!;
  if (NAMED[leaf]) return NAMED[leaf]!;
  let h = 0;
  for (const c of state) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return FALLBACK[h % FALLBACK.length]!;
}
