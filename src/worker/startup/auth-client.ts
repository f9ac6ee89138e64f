/**
 * The worker's side of the auth socket (src/restore/auth.ts): one connection, one
 * message, closed. Synchronous on purpose: when sendmsg returns, the message is queued
 * on the coordinator's side, so the HELLO sent afterwards can never overtake its proof,
 * and a start-up failure is there before our exit is.
 */
import { connectSeqpacket, sendFds, closeQuiet, kernelRandom } from '../../../native/index.js';
import { encodeAuth } from '../../protocol/wire.js';
import type { AuthMessage } from '../../protocol/messages.js';
import { authSocketPath } from '../../protocol/paths.js';

export const NONCE_BYTES = 16;

export function sendAuth(rundir: string, message: AuthMessage): void {
  const sock = connectSeqpacket(authSocketPath(rundir));
  try {
    sendFds(sock, Buffer.from(encodeAuth(message)), []);
  } finally {
    closeQuiet(sock);
  }
}

/** Proves to the coordinator that this process plays `dumpedPid`; returns the HELLO nonce. */
export function proveIdentity(rundir: string, dumpedPid: number): Uint8Array {
  const nonce = kernelRandom(NONCE_BYTES);
  sendAuth(rundir, { type: 'AUTH_PROOF', pid: dumpedPid, nonce });
  return nonce;
}
