/**
 * The restore's steps in the log, read from the coordinator machine's snapshots: the
 * start of registration (spawn), of the phases (GO → the last report) and its end with its
 * duration, and within them each phase the restore is in (the earliest phase a task whose
 * report is not in works in, as far as the tasks' STEPs tell), the
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

/** 'registering', 'become-creator.opening', … */
export function stateName(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object') {
    const [k, v] = Object.entries(value as Record<string, unknown>)[0] ?? [];
    return k === undefined ? '' : `${k}.${stateName(v)}`;
  }
  return '';
}

/** What a state is called in the log ('phases', 'verify', 'teardown', …). */
function stepOf(state: string): string {
  if (state === 'registering') return 'spawn';
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
  let currentPhase: string | undefined;
  let phaseSince = 0;
  const closePhase = (now: number): void => {
    if (currentPhase === undefined) return;
    const step = `phase ${currentPhase}`;
    log.info({ step, ms: Math.round(now - phaseSince) }, `${step}: done`);
    currentPhase = undefined;
  };
  return (snap) => {
    const state = stateName(snap.value);
    const now = performance.now();
    if (state !== current) {
      if (current === 'phases') closePhase(now);
      stateChanged(state, snap, now);
    }
    // After GO: the restore's phase (the earliest a task not reported is at) as it moves.
    const phase = state === 'phases' ? snap.context.phase : undefined;
    if (phase !== undefined && phase !== currentPhase) {
      closePhase(now);
      log.info({ step: `phase ${phase}` }, `phase ${phase}: start`);
      currentPhase = phase;
      phaseSince = now;
    }
  };

  function stateChanged(state: string, snap: Snapshot, now: number): void {
    const failure = snap.context.failure;
    if (current !== '') {
      const step = stepOf(current);
      log.info({ step, ms: Math.round(now - since) }, `${step}: done`);
      // comparing is transient (an eventless transition): the reports are compared
      // between the last report and the hooks, the hold or the teardown.
      if (current === 'phases' && state !== 'aborting') {
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
  }
}
