/**
 * Warm-up: a worker waits long for PHASE open-alive (every other worker must start
 * first), and the first run of any code path in a fresh Node process is slow (lazy
 * compilation: ≈ 5 ms per phase per worker here, measured with `npm run bench`). So while
 * it waits, the worker dry-runs its own plan: its task machine over stub actors that do
 * nothing, the protocol frames it will decode and encode, and a read of its own /proc fd
 * table. No effect leaves the process; nothing it makes is kept.
 */
import { createActor, fromPromise } from 'xstate';
import { taskMachine } from '../machines/task.js';
import type { TaskPlan } from '../plan/types.js';
import { BROADCAST_PHASES } from '../plan/types.js';
import type { PidMap, PidPair, WorkerMessage } from '../plan/messages.js';
import {
  encodeToCoordinator,
  decodeToCoordinator,
  encodeToWorker,
  decodeToWorker,
  encodeFdTransfer,
  decodeFdTransfer,
} from '../plan/wire.js';
import { readPidfds } from '../procfs/index.js';

/** Every dumped pid the plan mentions, mapped to itself: a pid map of the right shape. */
function syntheticPidMap(plan: TaskPlan): PidMap {
  const pids = new Set<number>([plan.pid, plan.ppid]);
  plan.workerChildren.forEach((c) => pids.add(c.pid));
  plan.zombieChildren.forEach((z) => pids.add(z.pid));
  for (const steps of Object.values(plan.steps)) {
    steps.sends.forEach((s) => pids.add(s.to));
    steps.receives.forEach((r) => pids.add(r.from));
    steps.opens.forEach((o) => 'taskPid' in o.how && pids.add(o.how.taskPid));
  }
  const pair = (p: number): PidPair => ({ dumped: p, restored: p });
  return { pids: [...pids].sort((a, b) => a - b).map(pair), tids: plan.threads.map(pair) };
}

const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

function stubActors(plan: TaskPlan) {
  return {
    spawnChildren: fromPromise(async () => ({ children: [], threads: [] })),
    spawnTemp: fromPromise(
      async ({ input }: { input: { temps: TaskPlan['steps']['dead']['temps'] } }) => ({
        temps: input.temps.map((t) => ({ ...t, pid: 1 })),
        helperFds: [],
      }),
    ),
    openFiles: fromPromise(async () => ({ files: [], helperFds: [] })),
    sendFds: fromPromise(async () => ({ messages: 0 })),
    recvFds: fromPromise(async () => ({ files: [], helperFds: [] })),
    finishTemp: fromPromise(
      async ({ input }: { input: { temps: Array<{ groupId: number; exitStatus: number }> } }) => ({
        reaped: input.temps.map((t) => ({ groupId: t.groupId, status: t.exitStatus })),
      }),
    ),
    finalizeFds: fromPromise(async () => ({ closed: [] })),
    reportFds: fromPromise(async () => ({ pid: plan.pid, restoredPid: 0, fds: [] })),
    tearDown: fromPromise(async () => {}),
  };
}

export async function warmUp(plan: TaskPlan): Promise<void> {
  const pidMap = syntheticPidMap(plan);
  const roundTrip = (m: WorkerMessage): unknown => decodeToCoordinator(encodeToCoordinator(m));
  const machine = taskMachine.provide({
    actors: stubActors(plan) as never,
    actions: { notifyCoordinator: (_, m: WorkerMessage) => void roundTrip(m) },
  });
  const actor = createActor(machine, { input: { plan } });
  actor.start();
  await settle();
  for (const phase of BROADCAST_PHASES) {
    const msg = decodeToWorker(encodeToWorker({ type: 'PHASE', phase, pidMap }));
    if (msg.type === 'PHASE') actor.send(msg);
    for (const s of plan.steps['open-alive'].sends) {
      decodeFdTransfer(
        encodeFdTransfer({ from: plan.pid, phase: 'open-alive', fileIds: s.fileIds }),
      );
    }
    await settle();
    await settle();
  }
  actor.send({ type: 'TEARDOWN', reason: 'warm-up' });
  await settle();
  actor.stop();
  readPidfds(process.pid);
}
