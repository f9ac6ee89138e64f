/**
 * Wait status words (as waitpid reports them): decoding, describing, and whether a
 * temporary or zombie process can die with exactly this status. Pure.
 */

export type WaitStatus =
  | { kind: 'exited'; code: number }
  | { kind: 'signaled'; signal: number; core: boolean }
  | { kind: 'invalid' };

const SIGKILL = 9;
/** Status word of a process killed by SIGKILL (what an unknown external death becomes). */
export const SIGKILL_STATUS = SIGKILL;

export function decodeWaitStatus(status: number): WaitStatus {
  if (!Number.isInteger(status) || status < 0 || status > 0xffff) return { kind: 'invalid' };
  const low = status & 0x7f;
  if (low === 0) return { kind: 'exited', code: status >> 8 };
  // 0x7f in the low bits is a stopped/continued report, not a death.
  if (low === 0x7f || status >> 8 !== 0) return { kind: 'invalid' };
  return { kind: 'signaled', signal: low, core: (status & 0x80) !== 0 };
}

/** A wait status word as a shell reports it ($?): the exit code, or 128 + the signal. */
export function shellStatus(status: number): number {
  return (status & 0x7f) === 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f);
}

export function describeWaitStatus(status: number): string {
  const s = decodeWaitStatus(status);
  if (s.kind === 'exited') return `exit ${s.code}`;
  if (s.kind === 'signaled') return `killed by signal ${s.signal}${s.core ? ' (core dumped)' : ''}`;
  return `invalid wait status 0x${status.toString(16)}`;
}

/**
 * Signals whose default action does not terminate (ignore: CHLD CONT URG WINCH; stop:
 * STOP TSTP TTIN TTOU): `kill -SIG $$` with the default handler cannot reproduce them.
 */
const NON_FATAL_SIGNALS = new Set([17, 18, 19, 20, 21, 22, 23, 28]);

/**
 * Why a process cannot be made to die with exactly `status`, or undefined if it can:
 * `exit N` for an exit; default handler, `ulimit -c 0` and `kill -SIG $$` (from `sh`)
 * for a signal. The core-dumped bit appears only when a core file was really written, so
 * it is not reproducible.
 */
export function unreproducibleStatus(status: number): string | undefined {
  const s = decodeWaitStatus(status);
  if (s.kind === 'invalid') return `${describeWaitStatus(status)} is not a termination status`;
  if (s.kind === 'exited') return undefined;
  if (s.core) return `${describeWaitStatus(status)} cannot be reproduced without writing a core`;
  if (s.signal > 64 || NON_FATAL_SIGNALS.has(s.signal)) {
    return `${describeWaitStatus(status)}: that signal does not kill by default`;
  }
  return undefined;
}
