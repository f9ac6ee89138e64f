/**
 * Whether a program named on the command line (`--exec`, `--action-script`) can be run:
 * a regular file that we may execute (access X_OK, which execve checks too). One wording
 * for every option that takes a program.
 */
import { accessSync, constants, statSync } from 'node:fs';

/** Why `path` cannot be executed (e.g. "does not exist (ENOENT)"), or undefined if it can. */
export function notExecutable(path: string): string | undefined {
  try {
    if (!statSync(path).isFile()) return 'is not a regular file';
    accessSync(path, constants.X_OK);
    return undefined;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    if (code === 'ENOENT') return 'does not exist (ENOENT)';
    if (code === 'EACCES') return 'is not executable (EACCES)';
    return `cannot be executed (${code})`;
  }
}
