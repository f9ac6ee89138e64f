/**
 * The one list of target kinds, and the lookups generic code uses instead of switching on
 * a kind or an open strategy. Adding a kind is one line here (docs/adding-a-target-kind.md).
 */
import { ImageError, PcrError } from '../errors.js';
import type { TargetKind } from '../model/image.js';
import { dead } from './dead.js';
import { external } from './external.js';
import { inTreeAlive } from './in-tree-alive.js';
import { inTreeZombie } from './in-tree-zombie.js';
import type { OpenStrategy, OwnedField, TargetKindModule } from './kind.js';
import type { OpenHow, Strategy } from './open-how.js';
import { thread } from './thread.js';

/** Every TargetKind of the model has its module here (the type requires each one). */
const MODULES: { readonly [K in TargetKind]: TargetKindModule<K> } = {
  'in-tree-alive': inTreeAlive,
  'in-tree-zombie': inTreeZombie,
  dead,
  thread,
  external,
};

export const TARGET_KINDS: readonly TargetKindModule[] = Object.values(MODULES);

const BY_NAME = new Map<string, TargetKindModule>(TARGET_KINDS.map((k) => [k.name, k]));

/**
 * The module of a kind. An unknown kind is refused here and only here: an ImageError
 * (PCR_ERR_IMAGE_INVALID) at `where` naming the kind.
 */
export function kindOf(name: string, where = 'kind'): TargetKindModule {
  const kind = BY_NAME.get(name);
  if (kind === undefined) throw new ImageError(where, `'${name}' is not a target kind`);
  return kind;
}

/** The kind whose image.proto enum value is `protoNumber`, if any. */
export function kindOfProto(protoNumber: number): TargetKindModule | undefined {
  return TARGET_KINDS.find((k) => k.protoNumber === protoNumber);
}

/** "dead", "external": the kinds that may set a field of OwnedField. */
export function ownersOf(field: OwnedField): string {
  return TARGET_KINDS.filter((k) => k.owns.includes(field))
    .map((k) => k.name)
    .join(' or ');
}

export const OPEN_STRATEGIES: readonly OpenStrategy[] = TARGET_KINDS.flatMap((k) => k.strategies);

const STRATEGY_BY_NAME = new Map<string, OpenStrategy>(OPEN_STRATEGIES.map((s) => [s.name, s]));

/** The strategy of an OpenHow (plans are made by the kinds, so it always has one). */
export function strategyOf<H extends OpenHow>(how: H): OpenStrategy<H['strategy']> {
  const s = STRATEGY_BY_NAME.get(how.strategy);
  if (s === undefined) {
    throw new PcrError('PCR_ERR_INTERNAL', `'${String(how.strategy)}' is not an open strategy`);
  }
  return s as OpenStrategy<H['strategy']>;
}

/** The strategy whose protocol.proto enum value is `wireNumber`, if any. */
export function strategyOfWire(wireNumber: number): OpenStrategy<Strategy> | undefined {
  return OPEN_STRATEGIES.find((s) => s.wireNumber === wireNumber);
}
