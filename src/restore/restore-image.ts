/**
 * restoreImage: the library entry of a restore (embeddable: no process.exit, no argv).
 * It resolves the options, plans, makes a private run directory, runs a coordinator
 * Session (the ZeroMQ ROUTER and the coordinator machine with the real effects), and
 * removes everything it made, on success and on every failure. See docs/restore.md.
 */
import { prctl, PR_SET_CHILD_SUBREAPER } from '../../native/index.js';
import { PcrError } from '../errors.js';
import type { Image } from '../model/image.js';
import { planRestore } from '../plan/planner.js';
import type { RestorePlan } from '../plan/types.js';
import { checkPlanLimits } from '../plan/limits.js';
import { checkImage } from '../image/codec.js';
import { count, textOf } from '../text.js';
import { resolveRestoreOptions, type RestoreOptions } from './options.js';
import type { PidMap } from '../protocol/messages.js';
import type { Difference } from '../verify/compare.js';
import type { AbortReason } from '../machines/coordinator.js';
import { bootId } from '../procfs/index.js';
import { hasDacOverride } from '../sys/open-files.js';
import { makeRundir, removeRundir } from '../coordinator/rundir.js';
import { Session } from '../coordinator/session.js';
import type { VerifiedResult } from '../coordinator/settings.js';
import { writeSpawnPlan } from '../launch/spawn-plan.js';
import { writeNsPids } from '../launch/ns-pids.js';
import { writePidMapFile } from './pid-map-file.js';
import { checkExecSpec } from '../coordinator/exec-spec.js';
import { sendFdMessages } from '../sys/fd-channel.js';
import { encodeHandoffHello } from '../protocol/handoff.js';
import { prepareSamePids, checkSamePidsOnVerified } from './same-pids.js';
export { removeLiveRundirs } from '../coordinator/rundir.js';
export type { RestoreOptions } from './options.js';

export interface RestoreResult {
  /** Restored and verified without a difference. */
  ok: boolean;
  pidMap: PidMap;
  differences: Difference[];
  plan: RestorePlan;
  /** exec without detach: the root program's wait status (it exited, the tree is gone). */
  rootStatus?: number;
  /** exec with detach: every task exec'd, the tree runs on as the host's programs. */
  detached: boolean;
}

export async function restoreImage(
  image: Image,
  options: RestoreOptions = {},
): Promise<RestoreResult> {
  checkImage(image);
  const resolved = resolveRestoreOptions(options);
  if (options.signal?.aborted) {
    throw new PcrError(
      'PCR_ERR_RESTORE',
      `restore not started: its signal was already aborted (${textOf(options.signal.reason)})`,
    );
  }
  const plan = planRestore(image, {
    externalDead: resolved.externalDead,
    currentBootId: bootId(),
    unprivileged: !hasDacOverride(),
    pidnsNew: resolved.pidnsNew,
    samePids: resolved.samePids,
  });
  checkPlanLimits(plan, resolved.limits);
  const log = resolved.session.logger;
  log.info(
    {
      step: 'plan',
      tasks: plan.tasks.length,
      files: image.files.length,
      targets: image.targets.length,
    },
    `plan: ${count(plan.tasks.length, 'task')}, ${count(image.files.length, 'open file')}, ${count(image.targets.length, 'target')}`,
  );
  const handoff = resolved.session.handoff;
  if (handoff?.exec !== undefined) {
    resolved.session.handoff = { ...handoff, exec: checkExecSpec(handoff.exec, image) };
    refuseExecWithThreads(plan);
  }
  if (handoff?.socketPath !== undefined) greetHandoffHost(handoff.socketPath, image);
  if (resolved.samePids || resolved.pidnsNew)
    prepareSamePids(image, resolved.pidnsNew, resolved.samePids);
  const pidDifferences: Difference[] = [];
  if (resolved.adoptOrphans) prctl(PR_SET_CHILD_SUBREAPER, 1);
  const pidMap = pidMapWriter(resolved.pidMapPath);
  const rundir = makeRundir(resolved.runDirParent);
  log.debug({ step: 'spawn', rundir }, `spawn: run directory ${rundir}`);
  let session: Session | undefined;
  try {
    writeSpawnPlan(rundir, plan);
    if (resolved.pidnsNew && resolved.samePids) writeNsPids(rundir, image);
    const settings = resolved.session;
    const onVerified = pidMap.wrap(settings.onVerified);
    session = await Session.open(image, plan, rundir, {
      ...settings,
      onVerified: resolved.samePids
        ? checkSamePidsOnVerified(image, pidDifferences, onVerified, resolved.pidnsNew)
        : onVerified,
      samePids: resolved.samePids,
      pidnsNew: resolved.pidnsNew,
    });
    const output = await session.run();
    // A callback of ours (trace sink, onVerified) that failed first stopped the restore.
    if (session.callerError) throw session.callerError;
    if (output.failure) throw abortError(output.failure);
    if (pidMap.error) throw pidMap.error;
    const differences = [...output.differences, ...pidDifferences];
    return {
      ok: output.ok && pidDifferences.length === 0,
      pidMap: output.pidMap,
      differences,
      plan,
      detached: output.detached,
      ...(output.rootStatus === undefined ? {} : { rootStatus: output.rootStatus }),
    };
  } finally {
    await session?.close();
    removeRundir(rundir);
    log.debug({ step: 'end', rundir }, 'end: run directory removed');
  }
}

/**
 * Writes the pid map file once verified without a difference, before the caller's
 * onVerified. A failed write is kept and reported after the restore, never thrown from
 * inside a machine action.
 */
function pidMapWriter(path: string | undefined) {
  const state = {
    error: undefined as PcrError | undefined,
    wrap(onVerified: ((r: VerifiedResult) => void) | undefined) {
      if (path === undefined) return onVerified;
      return (r: VerifiedResult): void => {
        if (r.differences.length === 0) {
          try {
            writePidMapFile(path, r.pidMap);
          } catch (err) {
            state.error = new PcrError(
              'PCR_ERR_SYSCALL',
              `--pid-map ${path}: ${(err as Error).message}`,
              { cause: err },
            );
          }
        }
        onVerified?.(r);
      };
    },
  };
  return state;
}

function abortError(f: AbortReason): PcrError {
  if (f.held) return new PcrError(f.code, `the held tree was taken down: ${f.message}`);
  if (f.execd)
    return new PcrError(f.code, `the tree of --exec programs was taken down: ${f.message}`);
  return new PcrError(f.code, `restore aborted in phase ${f.phase}: ${f.message}`);
}

/**
 * A task that holds pidfds to threads gets those threads from its worker (live non-leader
 * threads of it): execve would end them and leave the pidfds pointing at dead threads.
 */
function refuseExecWithThreads(plan: RestorePlan): void {
  const t = plan.tasks.find((x) => x.threads.length > 0);
  if (t !== undefined)
    throw new PcrError(
      'PCR_ERR_UNSUPPORTED',
      `--exec: task ${t.pid} must keep threads ${t.threads.join(', ')} alive for thread pidfds, which execve would end`,
    );
}

/**
 * Before anything is spawned: the host's socket takes one connection from us with the
 * Hello (what will come), so that nobody listening is an error now, naming path and errno.
 */
function greetHandoffHost(path: string, image: Image): void {
  const pidfds = image.tasks.reduce((n, t) => n + t.fds.length, 0);
  // Zombie tasks hold nothing and have no worker: they do not connect.
  const connecting = image.tasks.filter((t) => t.state !== 'zombie').length;
  try {
    sendFdMessages(path, [
      { payload: Buffer.from(encodeHandoffHello(connecting, pidfds)), fds: [] },
    ]);
  } catch (err) {
    throw new PcrError(
      'PCR_ERR_HANDOFF_SOCKET',
      `--handoff-socket ${path}: nobody takes the hand-off: ${(err as Error).message}`,
      { cause: err },
    );
  }
}
