/**
 * What every entry of the command line does around its command (main.ts, and the
 * per-command bundle entries such as dump-main.ts): output failures end the command with
 * their own status (output.ts); a PcrError becomes one line `pidfd-cr: …` on stderr and
 * the exit status of its code (src/errors.ts); an unexpected error keeps its stack.
 */
import { PcrError, exitCodeFor } from '../errors.js';
import { printable } from '../text.js';
import { guardOutput, outputFailure } from './output.js';

/** Runs `command` on `argv` and sets process.exitCode from what it returns or throws. */
export function runCommandLine(command: (argv: string[]) => Promise<number>, argv: string[]): void {
  guardOutput(exitCodeFor);
  command(argv).then(
    (code) => {
      process.exitCode = outputFailure() ? process.exitCode : code;
    },
    (err: unknown) => {
      // The output failure already ended the command (and aborted what it ran): say nothing more.
      if (outputFailure()) return;
      if (err instanceof PcrError) {
        // One line, whatever a name taken from the kernel or the image holds.
        process.stderr.write(`pidfd-cr: ${printable(err.message)}\n`);
      } else {
        process.stderr.write(`pidfd-cr: internal error: ${(err as Error)?.stack ?? String(err)}\n`);
      }
      process.exitCode = exitCodeFor(err);
    },
  );
}
