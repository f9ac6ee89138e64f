import { PcrError } from '../../errors.js';

export async function run(_argv: string[]): Promise<number> {
  throw new PcrError('PCR_ERR_UNSUPPORTED', 'demo is not implemented yet');
}
