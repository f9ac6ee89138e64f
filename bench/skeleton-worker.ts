/**
 * The design's lower bound for one restore worker (`npm run bench`, "skeleton"): a Node
 * process that loads what every worker must load — koffi (one call: PR_SET_PDEATHSIG),
 * zeromq (a DEALER), xstate, the protocol's protobuf code — says HELLO over the control
 * link, then plays the GO through its machine (an invoked actor with no work) and answers
 * an empty FD_REPORT, until TEARDOWN. No pidfd, no socket of its own, no verification.
 * Started like a worker (skeleton-start.cts: code cache; bundled by scripts/build.mjs).
 * Environment: SKELETON_ADDR (the ROUTER's ipc:// address), SKELETON_ID (routing id).
 */
import { assign, createActor, fromPromise, setup } from 'xstate';
import { Dealer } from 'zeromq';
import { prctl, PR_SET_PDEATHSIG } from '../native/index.js';
import { decodeToWorker, encodeToCoordinator } from '../src/protocol/wire.js';
import type { CoordinatorMessage, WorkerMessage } from '../src/protocol/messages.js';

prctl(PR_SET_PDEATHSIG, 9);
const id = Number(process.env.SKELETON_ID);
const dealer = new Dealer({ linger: 0, routingId: String(id) });
dealer.connect(process.env.SKELETON_ADDR ?? '');
const send = (m: WorkerMessage): void => void dealer.send(encodeToCoordinator(m));

const machine = setup({
  types: { events: {} as CoordinatorMessage, context: {} as { go?: true } },
  actors: { work: fromPromise<void, true | undefined>(async () => {}) },
  actions: {
    done: () => send({ type: 'FD_REPORT', report: { pid: id, restoredPid: process.pid, fds: [] } }),
  },
}).createMachine({
  id: 'skeleton',
  context: {},
  initial: 'ready',
  states: {
    ready: {
      on: {
        GO: { target: 'working', actions: assign({ go: true as const }) },
        TEARDOWN: 'done',
      },
    },
    working: {
      invoke: {
        id: 'work',
        src: 'work',
        input: ({ context }) => context.go,
        onDone: { target: 'ready', actions: 'done' },
      },
    },
    done: { type: 'final' },
  },
});
const actor = createActor(machine);
actor.subscribe({ complete: () => process.exit(0) });
actor.start();

void (async () => {
  send({ type: 'WORKER_HELLO', pid: id, restoredPid: process.pid, nonce: new Uint8Array(16) });
  for await (const [frame] of dealer) if (frame) actor.send(decodeToWorker(frame));
})();
