/** `pidfd-cr show -D DIR [--json]`: print an image as text or as the stable JSON form. */
import { UsageError } from '../../errors.js';
import { parseCommandArgs } from '../args.js';
import { readImage } from '../../image/store.js';
import { formatImage, imageToJson } from '../../image/show.js';

const HELP = `usage: pidfd-cr show -D DIR [--json]

Prints the image DIR/pidfd-cr.img: the host it was dumped on, the process tree with
every pidfd (fd, flags, target), and which fds share open files or targets.
  -D, --dir DIR   the image directory
      --json      the JSON form documented in docs/image-format.md
`;

export async function run(argv: string[]): Promise<number> {
  const values = parseCommandArgs('show', argv, {
    dir: { type: 'string', short: 'D' },
    json: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const dir = values.dir;
  if (typeof dir !== 'string' || dir === '') throw new UsageError('show: -D DIR is required');
  const image = readImage(dir);
  const out = values.json ? JSON.stringify(imageToJson(image), null, 2) + '\n' : formatImage(image);
  process.stdout.write(out);
  return 0;
}
