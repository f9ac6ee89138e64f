/**
 * The design's lower bound for one restore worker (`npm run bench`, "skeleton"): a Node
 * process that loads what every worker must load — koffi (one call: PR_SET_PDEATHSIG),
 * the control link (the workers' own ZMTP DEALER, src/protocol/zmtp-dealer.ts), xstate,
 * the protocol's protobuf code — says HELLO over the control link, then plays the GO
 * through its machine (an invoked actor with no work) and answers an empty FD_REPORT,
 * until TEARDOWN. No pidfd, no socket of its own, no verification. Started like a worker
 * (skeleton-start.cts: code cache; bundled by scripts/build.mjs). Environment:
 * SKELETON_ADDR (the ROUTER's ipc:// address), SKELETON_ID (routing id).
 */
import { assign, createActor, fromPromise, setup } from 'xstate';
import { ZmtpDealer } from '../src/protocol/zmtp-dealer.js';
import { prctl, PR_SET_PDEATHSIG } from '../native/index.js';
import { decodeToWorker, encodeToCoordinator } from '../src/protocol/wire.js';
import type { CoordinatorMessage, WorkerMessage } from '../src/protocol/messages.js';

prctl(PR_SET_PDEATHSIG, 9);
const id = Number(process.env.SKELETON_ID);
const dealer = new ZmtpDealer(
  (process.env.SKELETON_ADDR ?? '').replace(/^ipc:\/\//, ''),
  String(id),
  {
    onMessage: ([frame]) => actor.send(decodeToWorker(frame!)),
    onError: () => process.exit(1),
  },
);
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

send({ type: 'WORKER_HELLO', pid: id, restoredPid: process.pid, nonce: new Uint8Array(16) });
