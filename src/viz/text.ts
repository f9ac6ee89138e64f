/** `trace --format text`: the time-sorted timeline that `restore --trace` prints. */
import { formatTraceLine, type TraceEvent } from '../protocol/trace.js';
import { byTime, type VizEvent } from './events.js';

export function toText(events: readonly VizEvent[]): string {
  const sorted = [...events].sort(byTime);
  const t0 = sorted[0]?.time ?? 0;
  return sorted
    .map((e) => {
      // details.failure repeats details.error as an object: the line keeps the string.
      const { failure: _failure, ...details } = e.details;
      return formatTraceLine({ ...e, details } as TraceEvent, t0) + '\n';
    })
    .join('');
}
