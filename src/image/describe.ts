/** Words for the numbers in an image: open-file flags and wait status words. */
import { constants } from 'node:os';
import { FLAGS } from '../model/image.js';

const ACCESS_NAMES = ['RDONLY', 'WRONLY', 'RDWR', 'ACCMODE3'] as const;

/** Named status bits, in the order they are listed. O_CLOEXEC only appears per fd. */
const BIT_NAMES: ReadonlyArray<readonly [number, string]> = [
  [FLAGS.O_EXCL, 'THREAD'],
  [FLAGS.O_NONBLOCK, 'NONBLOCK'],
  [FLAGS.O_LARGEFILE, 'LARGEFILE'],
  [FLAGS.O_CLOEXEC, 'CLOEXEC'],
];

/**
 * The flags of an fd as words: the access mode (RDONLY, WRONLY, RDWR, or ACCMODE3, which
 * open_by_handle_at(O_WRONLY) really gives), THREAD (O_EXCL = PIDFD_THREAD), NONBLOCK,
 * LARGEFILE, CLOEXEC, and any other bit as an octal number such as `0o40`.
 */
export function flagNames(flags: number): string[] {
  const names: string[] = [ACCESS_NAMES[flags & FLAGS.O_ACCMODE]!];
  let rest = flags & ~FLAGS.O_ACCMODE;
  for (const [bit, name] of BIT_NAMES) {
    if (rest & bit) names.push(name);
    rest &= ~bit;
  }
  for (let bit = 1; rest !== 0; bit <<= 1) {
    if (rest & bit) names.push(`0o${(bit >>> 0).toString(8)}`);
    rest &= ~bit;
  }
  return names;
}

const SIGNAL_NAMES: ReadonlyMap<number, string> = new Map(
  Object.entries(constants.signals).map(([name, num]) => [num, name]),
);

export function signalName(sig: number): string {
  return SIGNAL_NAMES.get(sig) ?? `signal ${sig}`;
}

export interface EndStatus {
  /** "exited 7", "killed by SIGTERM", "killed by SIGSEGV (core dumped)". */
  text: string;
  /** Exit code for a normal exit, else null. */
  code: number | null;
  /** Signal number when killed by a signal, else null. */
  signal: number | null;
  signalName: string | null;
  coreDumped: boolean;
}

/** Decodes a wait status word as waitpid(2) reports it. */
export function decodeEndStatus(status: number): EndStatus {
  const sig = status & 0x7f;
  if (sig === 0) {
    const code = (status >> 8) & 0xff;
    return { text: `exited ${code}`, code, signal: null, signalName: null, coreDumped: false };
  }
  const coreDumped = (status & 0x80) !== 0;
  const name = signalName(sig);
  return {
    text: `killed by ${name}${coreDumped ? ' (core dumped)' : ''}`,
    code: null,
    signal: sig,
    signalName: SIGNAL_NAMES.get(sig) ?? null,
    coreDumped,
  };
}
