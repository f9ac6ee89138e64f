/**
 * Placeholder implementations of the machines' actors: the machines name their effects in
 * setup() and the runtime supplies them with `provide` (worker/, coordinator/); a machine
 * run without them fails by name instead of hanging.
 */
import { PcrError } from '../errors.js';

export function notProvided(name: string): () => Promise<never> {
  return () => Promise.reject(new PcrError('PCR_ERR_INTERNAL', `actor ${name} was not provided`));
}
