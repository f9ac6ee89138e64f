/**
 * Checks the image directory BEFORE the tree is frozen, so a dump that cannot be
 * written never touches the tree. writeImage checks again, atomically, when it writes.
 */
import { accessSync, constants, statSync } from 'node:fs';
import { PcrError } from '../errors.js';
import { imagePath } from '../image/store.js';

const code = (err: unknown): string => (err as NodeJS.ErrnoException).code ?? String(err);

export function checkImageDir(dir: string, force: boolean): void {
  let isDir: boolean;
  try {
    isDir = statSync(dir).isDirectory();
  } catch (err) {
    throw new PcrError('PCR_ERR_IMAGE_DIR', `image directory ${dir}: cannot use it: ${code(err)}`, {
      cause: err,
    });
  }
  if (!isDir) {
    throw new PcrError('PCR_ERR_IMAGE_DIR', `image directory ${dir}: not a directory (ENOTDIR)`);
  }
  try {
    accessSync(dir, constants.W_OK | constants.X_OK);
  } catch (err) {
    throw new PcrError('PCR_ERR_IMAGE_DIR', `image directory ${dir}: not writable: ${code(err)}`, {
      cause: err,
    });
  }
  if (!force) {
    try {
      statSync(imagePath(dir));
    } catch {
      return;
    }
    throw new PcrError(
      'PCR_ERR_IMAGE_EXISTS',
      `${imagePath(dir)} already exists (use --force to replace it)`,
    );
  }
}
