import type { VizEvent } from './events.js';
export async function renderHtml(
  events: VizEvent[],
  opts: { title: string; warnings: string[] },
): Promise<string> {
  return `<!doctype html><title>${opts.title}</title><pre>${events.length}</pre>`;
}
