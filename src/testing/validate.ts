/**
 * Checks a TreeSpec before anything is started, and resolves what each pidfd shares.
 * Every problem is a PCR_ERR_USAGE error naming the task and fd at fault.
 */
import { PcrError } from '../errors.js';
import { refKey, type PidfdRef, type PidfdSpec, type TaskSpec, type TreeSpec } from './spec.js';

export interface FlatTask {
  name: string;
  /** Parent task name; undefined for the root. */
  parent?: string;
  spec: TaskSpec;
}

/** A pidfd of the spec with its holder and the pidfd that opened its file. */
export interface ResolvedPidfd {
  holder: string;
  spec: PidfdSpec;
  /** The pidfd whose `target` made the open file description this fd shares. */
  origin: { holder: string; spec: PidfdSpec };
  via: 'open' | 'dup' | 'fork' | 'scm-rights';
}

export class SpecError extends PcrError {
  constructor(message: string) {
    super('PCR_ERR_USAGE', `example spec: ${message}`);
    this.name = 'SpecError';
  }
}

/** Tasks in pre-order (parents before children). */
export function flattenTasks(spec: TreeSpec): FlatTask[] {
  const out: FlatTask[] = [];
  const walk = (t: TaskSpec, parent?: string): void => {
    out.push(parent === undefined ? { name: t.name, spec: t } : { name: t.name, parent, spec: t });
    for (const c of t.children ?? []) walk(c, t.name);
  };
  walk(spec.root);
  return out;
}

const MAX_FD = 19000;

/** Validates the whole spec; returns the tasks and every pidfd resolved to its origin. */
export function resolveSpec(spec: TreeSpec): { tasks: FlatTask[]; pidfds: ResolvedPidfd[] } {
  const tasks = flattenTasks(spec);
  const names = new Set<string>();
  for (const n of [...tasks.map((t) => t.name), ...(spec.externals ?? []).map((e) => e.name)]) {
    if (names.has(n)) throw new SpecError(`name '${n}' is used twice`);
    names.add(n);
  }
  const byRef = new Map<string, { holder: string; spec: PidfdSpec }>();
  for (const e of spec.externals ?? []) {
    if (e.zombie) checkStatus(e.zombie.status, `external '${e.name}'`);
  }
  for (const t of tasks) {
    checkTask(t);
    for (const p of t.spec.pidfds ?? [])
      byRef.set(refKey({ task: t.name, fd: p.fd }), { holder: t.name, spec: p });
  }
  const ctx: Ctx = { spec, tasks: new Map(tasks.map((t) => [t.name, t])), byRef };
  const pidfds = [...byRef.values()].map((p) => resolvePidfd(ctx, p.holder, p.spec));
  return { tasks, pidfds };
}

interface Ctx {
  spec: TreeSpec;
  tasks: Map<string, FlatTask>;
  byRef: Map<string, { holder: string; spec: PidfdSpec }>;
}

function checkTask(t: FlatTask): void {
  const { spec } = t;
  if (
    spec.zombie &&
    ((spec.pidfds ?? []).length > 0 || (spec.children ?? []).length > 0 || spec.threads)
  ) {
    throw new SpecError(`task '${t.name}' is a zombie: it can hold no pidfds, children or threads`);
  }
  if (spec.zombie && t.parent === undefined) throw new SpecError('the root cannot be a zombie');
  if (spec.zombie) checkStatus(spec.zombie.status, `zombie task '${t.name}'`);
  if (spec.threads !== undefined && !(Number.isInteger(spec.threads) && spec.threads >= 0)) {
    throw new SpecError(`task '${t.name}': threads must be a count`);
  }
  const seen = new Set<number>();
  for (const p of spec.pidfds ?? []) {
    const at = `task '${t.name}' fd ${p.fd}`;
    if (!Number.isInteger(p.fd) || p.fd < 3 || p.fd > MAX_FD) {
      throw new SpecError(`${at}: fd must be an integer in 3..${MAX_FD}`);
    }
    if (seen.has(p.fd)) throw new SpecError(`${at}: fd is used twice`);
    seen.add(p.fd);
    if ((p.target === undefined) === (p.sameFileAs === undefined)) {
      throw new SpecError(`${at}: give exactly one of 'target' and 'sameFileAs'`);
    }
  }
}

function resolvePidfd(ctx: Ctx, holder: string, p: PidfdSpec): ResolvedPidfd {
  const at = `task '${holder}' fd ${p.fd}`;
  if (p.target !== undefined) {
    if (p.via !== undefined) throw new SpecError(`${at}: 'via' needs 'sameFileAs'`);
    checkTarget(ctx, p, at);
    return { holder, spec: p, origin: { holder, spec: p }, via: 'open' };
  }
  const ref = p.sameFileAs as PidfdRef;
  if (p.nonblock !== undefined || p.thread !== undefined || p.accessMode !== undefined) {
    throw new SpecError(
      `${at}: file flags come from the shared pidfd; remove nonblock/thread/accessMode`,
    );
  }
  const via = p.via ?? defaultVia(ctx, holder, ref.task);
  if (via === 'dup' && ref.task !== holder)
    throw new SpecError(`${at}: 'dup' needs a pidfd of the same task`);
  if (via === 'fork' && ctx.tasks.get(holder)?.parent !== ref.task) {
    throw new SpecError(`${at}: 'fork' needs a pidfd of the parent task`);
  }
  if (via === 'scm-rights' && ref.task === holder)
    throw new SpecError(`${at}: 'scm-rights' needs another task`);
  return { holder, spec: p, origin: originOf(ctx, ref, at), via };
}

function defaultVia(ctx: Ctx, holder: string, refTask: string): 'dup' | 'fork' | 'scm-rights' {
  if (refTask === holder) return 'dup';
  return ctx.tasks.get(holder)?.parent === refTask ? 'fork' : 'scm-rights';
}

function originOf(ctx: Ctx, ref: PidfdRef, at: string): { holder: string; spec: PidfdSpec } {
  const seen = new Set<string>();
  let cur: PidfdRef = ref;
  for (;;) {
    const key = refKey(cur);
    if (seen.has(key)) throw new SpecError(`${at}: 'sameFileAs' chain loops at ${key}`);
    seen.add(key);
    const hit = ctx.byRef.get(key);
    if (!hit) throw new SpecError(`${at}: 'sameFileAs' names ${key}, which the spec does not have`);
    if (hit.spec.target !== undefined) return hit;
    cur = hit.spec.sameFileAs as PidfdRef;
  }
}

function checkTarget(ctx: Ctx, p: PidfdSpec, at: string): void {
  const t = p.target!;
  if (p.accessMode !== undefined && p.thread)
    throw new SpecError(`${at}: accessMode cannot go with thread`);
  if ('task' in t) {
    if (!ctx.tasks.has(t.task)) throw new SpecError(`${at}: no task '${t.task}'`);
  } else if ('thread' in t) {
    const owner = ctx.tasks.get(t.thread.task);
    if (!owner) throw new SpecError(`${at}: no task '${t.thread.task}'`);
    const n = owner.spec.threads ?? 0;
    if (!Number.isInteger(t.thread.index) || t.thread.index < 0 || t.thread.index >= n) {
      throw new SpecError(
        `${at}: task '${t.thread.task}' has ${n} threads, no index ${t.thread.index}`,
      );
    }
    if (p.accessMode !== undefined)
      throw new SpecError(`${at}: accessMode cannot go with a thread target`);
  } else if ('external' in t) {
    if (!(ctx.spec.externals ?? []).some((e) => e.name === t.external)) {
      throw new SpecError(`${at}: no external '${t.external}'`);
    }
  } else if ('dead' in t) {
    checkStatus(t.dead.status, at);
  } else if ('deadThread' in t) {
    if (p.accessMode !== undefined)
      throw new SpecError(`${at}: accessMode cannot go with a thread target`);
  } else {
    throw new SpecError(`${at}: unknown target ${JSON.stringify(t)}`);
  }
}

/** Signals whose default action does not end the process (stop, continue, ignore). */
const NON_FATAL = new Set([17, 18, 19, 20, 21, 22, 23, 28]);

/**
 * Statuses a `sh` can reproduce exactly: exit 0..255, or death by a fatal signal 1..31
 * without the core bit (the shell sets RLIMIT_CORE 0 first).
 */
export function checkStatus(status: number, at: string): void {
  const exitOk =
    Number.isInteger(status) && status >= 0 && status <= 0xff00 && (status & 0xff) === 0;
  const sigOk = status >= 1 && status <= 31 && !NON_FATAL.has(status);
  if (!exitOk && !sigOk) throw new SpecError(`${at}: cannot reproduce wait status ${status}`);
}

/** The `sh -c` script that ends with exactly `status` (checked by checkStatus). */
export function statusScript(status: number): string {
  return (status & 0x7f) === 0 ? `exit ${status >> 8}` : `ulimit -c 0; kill -${status} $$`;
}
