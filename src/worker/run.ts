/**
 * The worker after its early start (main.ts): binds its fd socket, connects to the
 * coordinator, proves who it is on the auth socket (the nonce its HELLO carries,
 * docs/protocol.md) and says HELLO. A failure until ASSIGN is a start-up failure
 * (startup-guard.ts). On ASSIGN it takes the dumped comm and runs the task
 * machine with the real effects; PHASE and TEARDOWN go to the machine; every state change
 * goes back as a TRACE when tracing. It exits once torn down, after reaping its children.
 */
import { identity } from './startup/early.js';
import { prespawned } from './startup/prespawn.js';
import { writeFileSync } from 'node:fs';
import { createActor, type Actor } from 'xstate';
import { taskMachine } from '../machines/task.js';
import { ControlDealer } from '../protocol/zmtp-dealer.js';
import { encodeToCoordinator, decodeToWorker } from '../protocol/wire.js';
import type { CoordinatorMessage, WorkerMessage } from '../protocol/messages.js';
import { traceInspector, type TraceEvent, type WorkerNote } from '../protocol/trace.js';
import { failureFromError } from '../machines/failure.js';
import { WorkerEffects } from '../actors/task-effects.js';
import { parseFault, injectStartupFault } from '../actors/fault.js';
import { FAULT_ENV } from '../protocol/identity.js';
import { proveIdentity } from './startup/auth-client.js';
import { failStartup, startupDone } from './startup/guard.js';
import { PcrError } from '../errors.js';
import { COORDINATOR_OPENER } from '../plan/types.js';
import { markRanFully } from './cache-mark.cjs';

const pid = identity.dumpedPid;
const fault = parseFault(process.env[FAULT_ENV]);
injectStartupFault(fault, pid, identity.rundir, 'bind');
const effects = new WorkerEffects({
  dumpedPid: pid,
  rundir: identity.rundir,
  stderrFd: identity.stderrUsable ? 2 : null,
  ...(fault ? { fault } : {}),
  trace: identity.trace,
  ...(identity.trace ? { note: (n: WorkerNote) => forwardNote(n) } : {}),
  prespawned,
  ...(identity.samePids ? { samePids: true } : {}),
  ...(identity.pidns ? { inPidns: true } : {}),
});
injectStartupFault(fault, pid, identity.rundir, 'connect');

let actor: Actor<typeof taskMachine> | undefined;

const dealer = new ControlDealer(identity.rundir, String(pid), {
  onFrame: (frame) => onMessage(decodeToWorker(frame)),
  onError: (err) => die(`control link: ${err.message}`),
});
// The HELLO below waits for the ZMTP handshake, which the coordinator's ROUTER answers
// meanwhile. The proof is queued on the coordinator's side before the HELLO is even sent
// (docs/protocol.md "Authentication").
const nonce = proveIdentity(identity.rundir, pid);

function send(message: WorkerMessage): void {
  void dealer.send(encodeToCoordinator(message));
}

/**
 * A STEP (where the task is) goes out only once the task has been in that step's phase
 * for STEP_DELAY_MS: in a restore that goes well a task passes its steps faster than that
 * and sends none (each costs it and the coordinator ≈ 0.2 ms of CPU, on the critical
 * path); a task that hangs, spins or dies later in a step has said where it is. Only the
 * latest pending STEP is sent; the FD_REPORT supersedes it.
 */
const STEP_DELAY_MS = 5;
let pendingStep: WorkerMessage | undefined;
let stepTimer: NodeJS.Timeout | undefined;

function notify(message: WorkerMessage): void {
  if (message.type === 'STEP') {
    pendingStep = message;
    stepTimer ??= setTimeout(flushStep, STEP_DELAY_MS);
    return;
  }
  if (message.type === 'FD_REPORT') pendingStep = undefined;
  else flushStep();
  send(message);
}

function flushStep(): void {
  if (stepTimer !== undefined) clearTimeout(stepTimer);
  stepTimer = undefined;
  const step = pendingStep;
  pendingStep = undefined;
  if (step) send(step);
}

function diag(text: string): void {
  if (identity.stderrUsable) process.stderr.write(`pidfd-cr worker ${pid}: ${text}\n`);
}

/** Before ASSIGN this is a start-up failure; after it, one line and exit 70. */
function die(text: string): void {
  if (!actor) return void failStartup(new PcrError('PCR_ERR_RESTORE', text));
  diag(text);
  process.exit(70);
}

function setComm(comm: string): void {
  // /proc/self/comm names the main thread, which is the process's comm (max 15 bytes).
  if (comm) writeFileSync('/proc/self/comm', comm.slice(0, 15));
}

function forwardTrace(trace: TraceEvent): void {
  send({
    type: 'TRACE',
    pid,
    trace: {
      machine: trace.source,
      from: trace.from,
      to: trace.to,
      event: trace.event,
      details: JSON.stringify(trace.details),
      timeMs: trace.time,
    },
  });
}

/** A temp process or fd-transfer event of ours: a TRACE with `kind` and `data`. */
function forwardNote(note: WorkerNote): void {
  const { kind, time, ...data } = note;
  send({
    type: 'TRACE',
    pid,
    trace: {
      machine: `task:${pid}`,
      from: '',
      to: '',
      event: `pcr.${kind}`,
      details: '{}',
      timeMs: time,
      kind,
      data: JSON.stringify(data),
    },
  });
}

function start(message: Extract<CoordinatorMessage, { type: 'ASSIGN' }>): void {
  startupDone();
  process.on('uncaughtException', onUncaught);
  setComm(message.plan.comm);
  const machine = taskMachine.provide({
    actors: effects.actors(),
    actions: {
      notifyCoordinator: (_, m: WorkerMessage) => {
        if (m.type === 'CHILDREN_SPAWNED') effects.reportedChildren();
        notify(m);
      },
    },
  });
  actor = createActor(machine, {
    input: { plan: message.plan },
    ...(identity.trace ? { inspect: traceInspector(`task:${pid}`, forwardTrace) } : {}),
  });
  actor.subscribe({
    next: (snapshot) => {
      // A worker that got as far as holding ran (nearly) every code path: its V8 code
      // cache is worth keeping (start.cts writes one only then).
      if (snapshot.matches('holding')) markRanFully();
    },
    complete: () => void finish(0),
    error: (err) => {
      diag(`task machine error: ${(err as Error).message}`);
      void finish(70);
    },
  });
  if (message.plan.steps['open-alive'].receives.some((r) => r.from === COORDINATOR_OPENER))
    effects.inbox.expectFromOutside(); // --pidns new: external targets (plan/types.ts)
  // spawnChildren starts x of the dead phase before it reports: ready before GO.
  effects.planTemps(message.plan.steps.dead.temps);
  actor.start();
}

function onMessage(message: CoordinatorMessage): void {
  if (message.type === 'ASSIGN') {
    if (actor) return die('a second ASSIGN');
    return start(message);
  }
  if (!actor) {
    if (message.type === 'TEARDOWN') return void finishEarly();
    return die(`${message.type} before ASSIGN`);
  }
  actor.send(message);
}

/**
 * TEARDOWN before any plan: nothing was made yet but the socket and the child workers
 * spawned early, which the coordinator does not know yet (no TEARDOWN reaches them).
 */
async function finishEarly(): Promise<void> {
  await effects.tearDownNow();
  await finish(0);
}

async function finish(code: number): Promise<void> {
  // The final TRACE (tearing-down → done) is emitted after the machine completes.
  await new Promise((r) => setImmediate(r));
  await dealer.close();
  process.exit(code);
}

/** After ASSIGN: the failure goes over the control link, the stack to our stderr. */
function onUncaught(err: Error): void {
  const failure = failureFromError(err, actor?.getSnapshot().context.phase ?? 'spawn');
  send({
    type: 'WORKER_FAILED',
    pid,
    failure: { ...failure, message: `uncaught: ${failure.message}` },
  });
  diag(err.stack ?? String(err));
  setTimeout(() => process.exit(70), 50);
}

send({ type: 'WORKER_HELLO', pid, restoredPid: process.pid, nonce });
