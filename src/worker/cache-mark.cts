/**
 * The mark a worker sets once it reached `holding` (run.ts): start.cts writes the V8
 * code cache only for a worker that has it, i.e. one that ran (nearly) every code path.
 * CommonJS, so that start.cts can require it before the bundle runs.
 */
const RAN_FULLY = Symbol.for('pidfd-cr.worker.ran-fully');

export const markRanFully = (): void => void Reflect.set(globalThis, RAN_FULLY, true);

export const ranFully = (): boolean => Reflect.get(globalThis, RAN_FULLY) === true;
