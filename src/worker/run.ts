/**
 * The worker after its early start (main.ts): binds its fd socket, connects to the
 * coordinator and says HELLO; on ASSIGN it takes the dumped comm and runs the task
 * machine with the real effects; PHASE and TEARDOWN go to the machine; every state change
 * goes back as a TRACE when tracing. It exits once torn down, after reaping its children.
 */
import { identity } from './early.js';
import { prespawned } from './prespawn.js';
import { writeFileSync } from 'node:fs';
import { createActor, type Actor } from 'xstate';
import { taskMachine } from '../machines/task.js';
import { ControlDealer } from '../restore/zmq-link.js';
import { encodeToCoordinator, decodeToWorker } from '../plan/wire.js';
import type { CoordinatorMessage, WorkerMessage } from '../plan/messages.js';
import { traceInspector, type TraceEvent } from '../restore/trace.js';
import { failureFromError } from '../machines/failure.js';
import { WorkerEffects } from './effects.js';
import { parseFault } from './fault.js';
import { FAULT_ENV } from './identity.js';

const pid = identity.dumpedPid;
const effects = new WorkerEffects({
  dumpedPid: pid,
  rundir: identity.rundir,
  stderrFd: identity.stderrUsable ? 2 : null,
  fault: parseFault(process.env[FAULT_ENV]),
  trace: identity.trace,
  prespawned,
});

let actor: Actor<typeof taskMachine> | undefined;

const dealer = new ControlDealer(identity.rundir, String(pid), {
  onFrame: (frame) => onMessage(decodeToWorker(frame)),
  onError: (err) => die(`control link: ${err.message}`),
});

function send(message: WorkerMessage): void {
  void dealer.send(encodeToCoordinator(message));
}

function diag(text: string): void {
  if (identity.stderrUsable) process.stderr.write(`pidfd-cr worker ${pid}: ${text}\n`);
}

function die(text: string): never {
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

function start(message: Extract<CoordinatorMessage, { type: 'ASSIGN' }>): void {
  setComm(message.plan.comm);
  const machine = taskMachine.provide({
    actors: effects.actors(),
    actions: { notifyCoordinator: (_, m: WorkerMessage) => send(m) },
  });
  actor = createActor(machine, {
    input: { plan: message.plan },
    ...(identity.trace ? { inspect: traceInspector(`task:${pid}`, forwardTrace) } : {}),
  });
  actor.subscribe({
    complete: () => void finish(0),
    error: (err) => {
      diag(`task machine error: ${(err as Error).message}`);
      void finish(70);
    },
  });
  actor.start();
  // After CHILDREN_SPAWNED is on its way: x of the dead phase, ready before that phase.
  setImmediate(() => effects.prestartTemps(message.plan.steps.dead.temps));
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

process.on('uncaughtException', (err) => {
  const failure = failureFromError(err, actor?.getSnapshot().context.phase ?? 'spawn');
  send({
    type: 'WORKER_FAILED',
    pid,
    failure: { ...failure, message: `uncaught: ${failure.message}` },
  });
  diag(err.stack ?? String(err));
  setTimeout(() => process.exit(70), 50);
});

send({ type: 'WORKER_HELLO', pid, restoredPid: process.pid });
