/**
 * Pure: turns a resolved TreeSpec into steps, each run by one task (or by the builder
 * for the root spawn), with the facts it needs and the facts it makes. The builder runs
 * every step whose needs are met, so independent tasks work in parallel.
 *
 * Facts: `task:X` (X runs and is connected, or X is a zombie), `threads:X` (X's extra
 * threads run), `fd:X:N` (fd N of X holds its pidfd).
 *
 * Why this order is safe: a task's pidfds are close-on-exec until its `finalize`, which
 * comes after everything it spawns, so no pidfd leaks into a child by accident; fork
 * inheritance is explicit (dup2 at spawn).
 */
import { FLAGS } from '../model/image.js';
import { PIDFD_NONBLOCK, PIDFD_THREAD } from '../../native/pidfd.js';
import type {
  ExternalSpec,
  PidfdRef,
  PidfdSpec,
  TargetSpec,
  TreeSpec,
  WaitStatus,
} from './spec.js';
import { resolveSpec, SpecError, type FlatTask, type ResolvedPidfd } from './validate.js';

export type OpenTarget = Extract<
  TargetSpec,
  { task: string } | { thread: unknown } | { external: string }
>;

export type Step =
  /** `by` spawns Node task `task` (by undefined: the builder spawns the root). */
  | {
      op: 'spawn';
      by?: string;
      task: string;
      inherit: Array<[from: number, to: number]>;
      reserve: number[];
    }
  /** `by` spawns a process that ends with `status` and is never reaped. */
  | { op: 'zombie'; by: string; task: string; status: WaitStatus }
  | { op: 'threads'; by: string; count: number }
  /** pidfd_open(target, openFlags) at fd; reopened through /proc with accessMode if given. */
  | {
      op: 'open';
      by: string;
      fd: number;
      target: OpenTarget;
      openFlags: number;
      accessMode?: AccessMode;
    }
  /** A temporary process ends with `status`; its pidfd (opened before the reap) stays at fd. */
  | {
      op: 'dead';
      by: string;
      fd: number;
      status: WaitStatus;
      openFlags: number;
      accessMode?: AccessMode;
    }
  /** A temporary thread of `by` ends; its PIDFD_THREAD pidfd stays at fd. */
  | { op: 'deadThread'; by: string; fd: number; openFlags: number }
  | { op: 'dup'; by: string; fd: number; from: number }
  /** `by` sends its fd over SCM_RIGHTS; `to.task` installs it at `to.fd`. */
  | { op: 'send'; by: string; fd: number; to: PidfdRef }
  /** Set the final close-on-exec bits; the task checks it holds exactly these pidfds. */
  | { op: 'finalize'; by: string; cloexec: Array<[fd: number, cloexec: boolean]> };

export type AccessMode = 'rdonly' | 'wronly' | 'rdwr' | 'by-handle';

export interface PlannedStep {
  step: Step;
  needs: string[];
  makes: string[];
}

export interface Plan {
  tasks: FlatTask[];
  externals: ExternalSpec[];
  pidfds: ResolvedPidfd[];
  steps: PlannedStep[];
}

const ACCESS_BITS: Record<AccessMode, number> = { rdonly: 0, wronly: 1, rdwr: 2, 'by-handle': 2 };

export const taskFact = (name: string): string => `task:${name}`;
export const fdFact = (name: string, fd: number): string => `fd:${name}:${fd}`;

/** Does this origin pidfd refer to a thread (PIDFD_THREAD set)? */
function isThreadPidfd(p: PidfdSpec): boolean {
  const t = p.target;
  return Boolean(p.thread) || (t !== undefined && ('thread' in t || 'deadThread' in t));
}

/** pidfd_open flags of an origin pidfd. */
export function openFlagsOf(p: PidfdSpec): number {
  return (p.nonblock ? PIDFD_NONBLOCK : 0) | (isThreadPidfd(p) ? PIDFD_THREAD : 0);
}

/** f_flags the file made by an origin pidfd has (F_GETFL: O_CLOEXEC only by handle). */
export function fileFlagsOf(p: PidfdSpec): number {
  const access =
    p.accessMode === undefined
      ? FLAGS.O_RDWR
      : p.accessMode === 'by-handle'
        ? FLAGS.O_RDWR | FLAGS.O_CLOEXEC
        : FLAGS.O_LARGEFILE | ACCESS_BITS[p.accessMode];
  return access | (p.nonblock ? FLAGS.O_NONBLOCK : 0) | (isThreadPidfd(p) ? FLAGS.O_EXCL : 0);
}

export function accessOpenFlags(mode: AccessMode): number {
  return ACCESS_BITS[mode];
}

export function planTree(spec: TreeSpec): Plan {
  const { tasks, pidfds } = resolveSpec(spec);
  const steps: PlannedStep[] = [];
  for (const t of tasks) steps.push(...taskSteps(t, pidfds));
  for (const p of pidfds) {
    const step = pidfdStep(p);
    if (step) steps.push(step);
  }
  checkSatisfiable(steps);
  return { tasks, externals: spec.externals ?? [], pidfds, steps };
}

function taskSteps(t: FlatTask, pidfds: ResolvedPidfd[]): PlannedStep[] {
  const mine = pidfds.filter((p) => p.holder === t.name);
  const parentNeeds = t.parent === undefined ? [] : [taskFact(t.parent)];
  if (t.spec.zombie) {
    return [
      {
        step: { op: 'zombie', by: t.parent!, task: t.name, status: t.spec.zombie.status },
        needs: parentNeeds,
        makes: [taskFact(t.name)],
      },
    ];
  }
  const forked = mine.filter((p) => p.via === 'fork');
  const spawn: PlannedStep = {
    step: {
      op: 'spawn',
      ...(t.parent === undefined ? {} : { by: t.parent }),
      task: t.name,
      inherit: forked.map((p) => [p.spec.sameFileAs!.fd, p.spec.fd]),
      reserve: mine.filter((p) => p.via !== 'fork').map((p) => p.spec.fd),
    },
    needs: [...parentNeeds, ...forked.map((p) => fdFact(t.parent!, p.spec.sameFileAs!.fd))],
    makes: [taskFact(t.name), ...forked.map((p) => fdFact(t.name, p.spec.fd))],
  };
  const out = [spawn];
  if (t.spec.threads) {
    out.push({
      step: { op: 'threads', by: t.name, count: t.spec.threads },
      needs: [taskFact(t.name)],
      makes: [`threads:${t.name}`],
    });
  }
  out.push({
    step: {
      op: 'finalize',
      by: t.name,
      cloexec: mine.map((p) => [p.spec.fd, p.spec.cloexec ?? true]),
    },
    needs: [
      taskFact(t.name),
      ...mine.map((p) => fdFact(t.name, p.spec.fd)),
      ...(t.spec.children ?? []).map((c) => taskFact(c.name)),
    ],
    makes: [`final:${t.name}`],
  });
  return out;
}

/** The step that puts this pidfd in place; null for fork inheritance (the spawn does it). */
function pidfdStep(p: ResolvedPidfd): PlannedStep | null {
  const { holder, spec } = p;
  const makes = [fdFact(holder, spec.fd)];
  const base = [taskFact(holder)];
  if (p.via === 'fork') return null;
  if (p.via === 'dup') {
    const from = spec.sameFileAs!.fd;
    return {
      step: { op: 'dup', by: holder, fd: spec.fd, from },
      needs: [fdFact(holder, from)],
      makes,
    };
  }
  if (p.via === 'scm-rights') {
    const src = spec.sameFileAs!;
    return {
      step: { op: 'send', by: src.task, fd: src.fd, to: { task: holder, fd: spec.fd } },
      needs: [fdFact(src.task, src.fd), taskFact(holder)],
      makes,
    };
  }
  const t = spec.target!;
  const openFlags = openFlagsOf(spec);
  const mode = spec.accessMode === undefined ? {} : { accessMode: spec.accessMode };
  if ('dead' in t)
    return {
      step: { op: 'dead', by: holder, fd: spec.fd, status: t.dead.status, openFlags, ...mode },
      needs: base,
      makes,
    };
  if ('deadThread' in t)
    return { step: { op: 'deadThread', by: holder, fd: spec.fd, openFlags }, needs: base, makes };
  const needs = [...base];
  if ('task' in t) needs.push(taskFact(t.task));
  if ('thread' in t) needs.push(`threads:${t.thread.task}`);
  return {
    step: {
      op: 'open',
      by: holder,
      fd: spec.fd,
      target: t,
      openFlags,
      ...mode,
    },
    needs,
    makes,
  };
}

/** Runs the plan symbolically: every step must become runnable, or the spec has a cycle. */
function checkSatisfiable(steps: PlannedStep[]): void {
  const facts = new Set<string>();
  let pending = steps;
  while (pending.length > 0) {
    const ready = pending.filter((s) => s.needs.every((n) => facts.has(n)));
    if (ready.length === 0) {
      const stuck = pending.map((s) => `${s.step.op} by ${s.step.by ?? 'builder'}`).join(', ');
      throw new SpecError(`cannot be built, its steps wait on each other: ${stuck}`);
    }
    for (const s of ready) s.makes.forEach((m) => facts.add(m));
    pending = pending.filter((s) => !ready.includes(s));
  }
}
