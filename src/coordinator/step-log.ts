/**
 * The restore's steps in the log, read from the coordinator machine's snapshots: the
 * start of registration (spawn), of each phase and its end with its duration (after GO
 * the restore is in the earliest phase any task whose report is not in works in), the
 * verification's result, the hold, the teardown or abort and its end. One subscription
 * (session.ts); the machine itself stays pure.
 */
import type { Logger } from '../log.js';

interface Snapshot {
  value: unknown;
  status: string;
  context: {
    /** The restore's phase: in state phases, the earliest phase a task still works in. */
    phase?: string;
    differences?: readonly unknown[];
    failure?: { message: string; code: string; phase: string } | undefined;
  };
}

/** 'registering', 'phases.open-alive', … */
export function stateName(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object') {
    const [k, v] = Object.entries(value as Record<string, unknown>)[0] ?? [];
    return k === undefined ? '' : `${k}.${stateName(v)}`;
  }
  return '';
}

/** What a state is called in the log ('phase open-alive', 'verify', 'teardown', …). */
function stepOf(state: string): string {
  if (state === 'registering') return 'spawn';
  if (state.startsWith('phases.')) return `phase ${state.slice('phases.'.length)}`;
  if (state === 'comparing') return 'verify';
  if (state === 'holding') return 'hold';
  if (state === 'tearing-down') return 'teardown';
  if (state === 'aborting') return 'abort';
  return state;
}

/** Returns the snapshot listener that logs each step's start and end. */
export function stepLogger(log: Logger): (snap: Snapshot) => void {
  let current = '';
  let since = 0;
  return (snap) => {
    const value = stateName(snap.value);
    const state = value === 'phases' ? `phases.${snap.context.phase ?? ''}` : value;
    if (state === current) return;
    const now = performance.now();
    const failure = snap.context.failure;
    if (current !== '') {
      const step = stepOf(current);
      log.info({ step, ms: Math.round(now - since) }, `${step}: done`);
      // comparing is transient (an eventless transition): the reports are compared
      // between the end of phase verify and the hold or the teardown.
      if (current.startsWith('phases.') && !state.startsWith('phases.') && state !== 'aborting') {
        const n = snap.context.differences?.length ?? 0;
        log.info(
          { step: 'verify', differences: n },
          `verify: ${n} difference${n === 1 ? '' : 's'} from the image`,
        );
      }
    }
    current = state;
    since = now;
    const step = stepOf(state);
    if (state === 'aborting')
      log.error(
        { step, code: failure?.code, phase: failure?.phase },
        `abort: ${failure?.message ?? 'stopped'}`,
      );
    else if (state === 'holding')
      log.info({ step }, 'hold: the restored tree is held until the signal ends it');
    else if (state === 'done' || state === 'failed')
      log.info({ step: 'end', ok: state === 'done' }, `restore ${state}`);
    else log.info({ step }, `${step}: start`);
  };
}
