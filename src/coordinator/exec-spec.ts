/**
 * `--exec` / the `exec` option: which program each task becomes after verification
 * (docs/restore.md "Hand-off"). Either one argv for every task (a template) or a map from
 * dumped pid to argv, with "*" for the tasks it does not name. Arguments may hold the
 * placeholders {dumped_pid}, {pid} (restored pid), {ppid} (restored parent pid; the
 * coordinator's for the root), {comm} and {{ / }} for braces; the program, argv[0], must
 * be an absolute path without placeholders. Checked before anything is spawned: every
 * task has a program, and each program is a regular file we may execute (access X_OK).
 */
import { isAbsolute } from 'node:path';
import { notExecutable } from '../sys/executable.js';
import { PcrError } from '../errors.js';
import type { Image } from '../model/image.js';
import type { PidMap } from '../protocol/messages.js';
import { restoredPid } from '../protocol/pidmap.js';
import { describe } from '../text.js';

/** One argv for every task, or argv by dumped pid ("*": every other task). */
export type ExecSpec = readonly string[] | Readonly<Record<string, readonly string[]>>;

const PLACEHOLDER = /\{\{|\}\}|\{([a-z_]*)\}/g;
const NAMES = new Set(['dumped_pid', 'pid', 'ppid', 'comm']);

const usage = (text: string) => new PcrError('PCR_ERR_USAGE', `exec: ${text}`);

function checkArgv(where: string, argv: unknown): readonly string[] {
  if (!Array.isArray(argv) || argv.length === 0 || !argv.every((a) => typeof a === 'string'))
    throw usage(`${where}: ${describe(argv)} is not a non-empty list of strings`);
  const program = argv[0] as string;
  if (!isAbsolute(program)) throw usage(`${where}: the program ${program} is not an absolute path`);
  if (program.includes('{')) throw usage(`${where}: the program ${program} holds a placeholder`);
  for (const arg of argv as string[]) {
    for (const m of arg.matchAll(PLACEHOLDER)) {
      if (m[1] !== undefined && !NAMES.has(m[1]))
        throw usage(`${where}: unknown placeholder {${m[1]}} in ${arg}`);
    }
  }
  return argv as string[];
}

/** The argv template of task `dumped`, or undefined when the spec names none. */
export function templateOf(spec: ExecSpec, dumped: number): readonly string[] | undefined {
  if (Array.isArray(spec)) return spec as readonly string[];
  const map = spec as Readonly<Record<string, readonly string[]>>;
  return map[String(dumped)] ?? map['*'];
}

/**
 * Checks the spec against the image and the programs on disk: a PCR_ERR_USAGE for a
 * malformed spec, PCR_ERR_EXEC naming the task and the program that cannot be executed.
 */
export function checkExecSpec(spec: unknown, image: Image): ExecSpec {
  if (Array.isArray(spec)) checkArgv('the template', spec);
  else if (spec !== null && typeof spec === 'object') {
    const pids = new Set(image.tasks.map((t) => String(t.pid)));
    for (const [key, argv] of Object.entries(spec)) {
      if (key !== '*' && !pids.has(key))
        throw usage(`task ${describe(key)} is not a task of the image`);
      checkArgv(`task ${key}`, argv);
    }
  } else throw usage(`${describe(spec)} is neither an argv list nor a map of them`);
  const valid = spec as ExecSpec;
  for (const t of image.tasks) {
    const argv = templateOf(valid, t.pid);
    if (argv === undefined) throw usage(`no program for task ${t.pid} (add it, or "*")`);
    checkProgram(t.pid, argv[0]!);
  }
  return valid;
}

function checkProgram(task: number, program: string): void {
  const why = notExecutable(program);
  if (why !== undefined)
    throw new PcrError('PCR_ERR_EXEC', `--exec for task ${task}: ${program} ${why}`);
}

/** Task `dumped`'s argv with its placeholders filled in. */
export function expandExec(spec: ExecSpec, image: Image, map: PidMap, dumped: number): string[] {
  const task = image.tasks.find((t) => t.pid === dumped);
  const argv = templateOf(spec, dumped) ?? [];
  const parent = task && task.pid !== image.rootPid ? restoredPid(map, task.ppid) : process.pid;
  const values: Record<string, string> = {
    dumped_pid: String(dumped),
    pid: String(restoredPid(map, dumped) ?? 0),
    ppid: String(parent ?? 0),
    comm: task?.comm ?? '',
  };
  return argv.map((a) =>
    a.replace(PLACEHOLDER, (whole: string, name: string | undefined) =>
      whole === '{{' ? '{' : whole === '}}' ? '}' : (values[name ?? ''] ?? whole),
    ),
  );
}
