/**
 * What a frame on the control socket may do. ZeroMQ cannot tell who sent a frame: a
 * message counts only if it is about the worker whose routing id sent it, and, HELLO
 * aside, only once that worker's HELLO was accepted (docs/protocol.md "Authentication").
 * A frame from any other peer (garbage, a forged message, a routing id of no accepted
 * worker) is ignored, in every state: it is only counted and traced. Only a HELLO can
 * stop a restore from outside, during registration (registry.ts says why).
 */
import type { WorkerMessage } from '../protocol/messages.js';
import { decodeToCoordinator } from '../protocol/wire.js';

export type Routed =
  | { route: 'stop'; reason: string }
  | { route: 'ignore'; reason?: string }
  | { route: 'hello'; message: Extract<WorkerMessage, { type: 'WORKER_HELLO' }> }
  | { route: 'trace'; message: Extract<WorkerMessage, { type: 'TRACE' }> }
  | { route: 'report'; message: Extract<WorkerMessage, { type: 'FD_REPORT' }> }
  | { route: 'children'; message: Extract<WorkerMessage, { type: 'CHILDREN_SPAWNED' }> }
  | {
      route: 'machine';
      message: Exclude<
        WorkerMessage,
        { type: 'WORKER_HELLO' | 'TRACE' | 'FD_REPORT' | 'CHILDREN_SPAWNED' }
      >;
    };

/** ZeroMQ gives peers without an id a binary one: shown as hex. */
const printableId = (id: string): string =>
  /^[\x20-\x7e]{1,32}$/.test(id)
    ? id
    : `0x${Buffer.from(id, 'latin1').toString('hex').slice(0, 64)}`;

export function routeFrame(
  routingId: string,
  frame: Buffer,
  isAccepted: (dumped: number) => boolean,
  registering: boolean,
): Routed {
  // A routing id is a dumped pid only once that worker's HELLO was accepted; until then
  // the peer may be anyone of our uid.
  const fromWorker = /^[1-9][0-9]*$/.test(routingId) && isAccepted(Number(routingId));
  const refuse = (reason: string): Routed =>
    fromWorker ? { route: 'stop', reason } : { route: 'ignore', reason };
  let message: WorkerMessage;
  try {
    message = decodeToCoordinator(frame);
  } catch (err) {
    return refuse(`undecodable frame from ${printableId(routingId)}: ${(err as Error).message}`);
  }
  const pid = message.type === 'FD_REPORT' ? message.report.pid : message.pid;
  if (String(pid) !== routingId) {
    return refuse(`peer '${printableId(routingId)}' sent a message about task ${pid}`);
  }
  if (message.type === 'WORKER_HELLO') {
    // Once every task registered, a HELLO can only come from outside: it changes nothing.
    if (!registering && !fromWorker)
      return { route: 'ignore', reason: `WORKER_HELLO for task ${pid} after registration` };
    return { route: 'hello', message };
  }
  // Only a worker whose HELLO was accepted may say anything else.
  if (!fromWorker)
    return { route: 'ignore', reason: `${message.type} from unregistered task ${pid}` };
  switch (message.type) {
    case 'TRACE':
      return { route: 'trace', message };
    case 'FD_REPORT':
      return { route: 'report', message };
    case 'CHILDREN_SPAWNED':
      return { route: 'children', message };
    default:
      return { route: 'machine', message };
  }
}
