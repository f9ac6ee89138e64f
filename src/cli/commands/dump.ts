/** `pidfd-cr dump -t PID -D DIR [--leave-stopped | --kill] [--force]`: checkpoint a tree's pidfds. */
import { UsageError } from '../../errors.js';
import { intOption, parseCommandArgs } from '../args.js';
import { dumpToDir } from '../../dump/index.js';
import { count } from '../../text.js';
import { LOG_HELP, LOG_OPTIONS, cliLogger } from '../log.js';
import { writeStdout } from '../output.js';

const HELP = `usage: pidfd-cr dump -t PID -D DIR [--leave-stopped | --kill] [--force] [-v]
                     [--log-level LEVEL] [--log-file F]

Freezes the process tree rooted at PID (ptrace, invisible to the tasks' parents), reads
every pidfd of every task, and writes the image DIR/pidfd-cr.img. The tree runs on
afterwards.
  -t, --tree PID      root of the tree
  -D, --dir DIR       image directory (must exist and be writable)
      --leave-stopped leave every live task stopped (SIGSTOP) after the dump
      --kill          once the image is written, SIGKILL the tree (still frozen) and
                      wait until its pids are free: for restore --same-pids
      --force         replace an image already in DIR
${LOG_HELP}
Exit statuses: 3 no such process, 4 permission (ptrace access), 5 a task exited while
being dumped, 6 image directory unusable, 7 image exists (use --force), 11 --kill: a
pid still in use 10 s after the kill (the image is written); see docs/dump.md.
`;

export async function run(argv: string[]): Promise<number> {
  const values = parseCommandArgs('dump', argv, {
    tree: { type: 'string', short: 't' },
    dir: { type: 'string', short: 'D' },
    'leave-stopped': { type: 'boolean' },
    force: { type: 'boolean' },
    ...LOG_OPTIONS,
    kill: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const pid = intOption('dump', 'tree', values.tree as string | undefined);
  if (pid === undefined || pid === 0) throw new UsageError('dump: -t PID (a pid > 0) is required');
  const dir = values.dir;
  if (typeof dir !== 'string' || dir === '') throw new UsageError('dump: -D DIR is required');
  const log = await cliLogger('dump', values);
  let dumped: Awaited<ReturnType<typeof dumpToDir>>;
  try {
    dumped = await dumpToDir(pid, dir, {
      leaveStopped: values['leave-stopped'] === true,
      force: values.force === true,
      kill: values.kill === true,
      ...(log.logger ? { logger: log.logger } : {}),
    });
  } finally {
    log.close();
  }
  const { image, path } = dumped;
  const fds = image.tasks.reduce((n, t) => n + t.fds.length, 0);
  writeStdout(
    `dumped ${count(image.tasks.length, 'task')}, ${count(fds, 'pidfd')} ` +
      `(${count(image.files.length, 'open file')}, ${count(image.targets.length, 'target')}) to ${path}\n`,
  );
  if (values.kill === true) {
    writeStdout(`killed the dumped tree; its pids are free\n`);
  }
  return 0;
}
