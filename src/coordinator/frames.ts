/**
 * What a frame on the control socket may do. ZeroMQ cannot tell who sent a frame: a
 * message counts only if it is about the worker whose routing id sent it, and, HELLO
 * aside, only once that worker's HELLO was accepted (docs/protocol.md "Authentication").
 */
import type { WorkerMessage } from '../protocol/messages.js';
import { decodeToCoordinator } from '../protocol/wire.js';

export type Routed =
  | { route: 'stop'; reason: string }
  | { route: 'ignore' }
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

export function routeFrame(
  routingId: string,
  frame: Buffer,
  isAccepted: (dumped: number) => boolean,
): Routed {
  let message: WorkerMessage;
  try {
    message = decodeToCoordinator(frame);
  } catch (err) {
    return {
      route: 'stop',
      reason: `undecodable frame from ${routingId}: ${(err as Error).message}`,
    };
  }
  const pid = message.type === 'FD_REPORT' ? message.report.pid : message.pid;
  if (String(pid) !== routingId) {
    return { route: 'stop', reason: `worker '${routingId}' sent a message about task ${pid}` };
  }
  if (message.type === 'WORKER_HELLO') return { route: 'hello', message };
  // Only a worker whose HELLO was accepted may say anything else.
  if (!isAccepted(pid)) return { route: 'ignore' };
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
