#!/usr/bin/env node
/**
 * pidfd-cr command line: a thin shell. Each command parses its own argv, calls the
 * library and returns an exit status; PcrErrors become one line on stderr and the exit
 * code of their `code` (src/errors.ts). Unexpected errors keep their stack (shell.ts).
 */
import { runCommandLine } from './shell.js';

type Command = (argv: string[]) => Promise<number>;

const commands: Record<string, () => Promise<Command>> = {
  dump: async () => (await import('./commands/dump.js')).run,
  show: async () => (await import('./commands/show.js')).run,
  restore: async () => (await import('./commands/restore.js')).run,
  demo: async () => (await import('./commands/demo.js')).run,
  trace: async () => (await import('./commands/trace.js')).run,
  machines: async () => (await import('./commands/machines.js')).run,
  check: async () => (await import('./commands/check.js')).run,
  swrk: async () => (await import('./commands/swrk.js')).run,
};

const USAGE = `usage: pidfd-cr <command> [options]

commands:
  dump -t PID -D DIR [--leave-stopped | --kill] [--force]
                                                   checkpoint the pidfds of a tree
  show -D DIR [--json]                             print an image
  restore -D DIR [--trace] [--trace-file F] [--pid-map F] [--hold] [--timeout S]
          [--external-dead] [--max-processes N] [--pidfile F] [--viz FILE]
          [--action-script PATH]... [--status-fd N] [--exec JSON|@FILE [-d]]
          [--handoff-socket PATH] [--same-pids] [--pidns new]
                                                   restore the pidfds of an image
  demo [--trace] [--trace-file F] [--viz FILE]    dump and restore a built-in example
  trace FILE [--format html|chrome|text] [-o OUT]  draw a restore's trace file
  machines [--format mermaid|dot|json|svg] [--machine task|coordinator|all]
                                                   the statecharts of the two machines
  check [--json]                                   what dump and restore can do here
  swrk FD                                          serve a host over its socket (criu swrk)
  version, --version, -V                           print the version of pidfd-cr

dump, restore and demo also take -v (repeatable), --log-level LEVEL and --log-file F:
a log of what they do at each step (docs/cli.md "Logs").
'pidfd-cr <command> --help' describes one command.`;

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    (name === undefined ? process.stderr : process.stdout).write(USAGE + '\n');
    return name === undefined ? 2 : 0;
  }
  if (name === '--version' || name === '-V' || name === 'version') {
    if (rest.length > 0) {
      process.stderr.write(`pidfd-cr: ${name} takes no arguments\n`);
      return 2;
    }
    // From the package.json of this installed copy, read at run time.
    const { toolVersion } = await import('../dump/host.js');
    process.stdout.write(`${toolVersion()}\n`);
    return 0;
  }
  const load = commands[name];
  if (!load) {
    process.stderr.write(`pidfd-cr: unknown command '${name}'\n${USAGE}\n`);
    return 2;
  }
  return (await load())(rest);
}

runCommandLine(main, process.argv.slice(2));
