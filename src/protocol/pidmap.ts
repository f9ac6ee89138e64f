/** Lookups in a PidMap (dumped -> restored). Pure. */
import { PcrError } from '../errors.js';
import type { PidMap, PidPair } from './messages.js';

export const EMPTY_PID_MAP: PidMap = { pids: [], tids: [] };

function lookup(pairs: readonly PidPair[], dumped: number): number | undefined {
  return pairs.find((p) => p.dumped === dumped)?.restored;
}

export function restoredPid(map: PidMap, dumped: number): number | undefined {
  return lookup(map.pids, dumped);
}

export function restoredTid(map: PidMap, dumped: number): number | undefined {
  return lookup(map.tids, dumped);
}

/** Like restoredPid, but a missing entry is an internal error naming the pid. */
export function requireRestoredPid(map: PidMap, dumped: number): number {
  const pid = restoredPid(map, dumped);
  if (pid === undefined) {
    throw new PcrError('PCR_ERR_INTERNAL', `no restored pid for dumped pid ${dumped}`);
  }
  return pid;
}

/** Inserts or replaces pairs; result sorted by dumped id. */
export function withPairs(pairs: readonly PidPair[], add: readonly PidPair[]): PidPair[] {
  const byDumped = new Map(pairs.map((p) => [p.dumped, p.restored]));
  for (const p of add) byDumped.set(p.dumped, p.restored);
  return [...byDumped]
    .map(([dumped, restored]) => ({ dumped, restored }))
    .sort((a, b) => a.dumped - b.dumped);
}
