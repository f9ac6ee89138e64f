import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pidfdcr } from '../../gen/pb.js';
import { ImageError, PcrError } from '../../src/errors.js';
import { encodeImage } from '../../src/image/codec.js';
import { validateImage } from '../../src/image/validate.js';
import type { OpenOps, Sighting, TreeFacts, WireType } from '../../src/kinds/kind.js';
import {
  kindOf,
  kindOfProto,
  OPEN_STRATEGIES,
  ownersOf,
  strategyOf,
  strategyOfWire,
  TARGET_KINDS,
} from '../../src/kinds/registry.js';
import type { OpenHow } from '../../src/kinds/open-how.js';
import type { TargetKind } from '../../src/model/image.js';
import { planRestore } from '../../src/plan/planner.js';
import { decodeToWorker, encodeToWorker } from '../../src/protocol/wire.js';
import type { TaskPlan } from '../../src/plan/types.js';
import { BOOT_ID, sampleImage } from '../fixtures/plan-images.js';

/** Every TargetKind of the model: the type makes this list miss none and invent none. */
const MODEL_KINDS: Record<TargetKind, true> = {
  'in-tree-alive': true,
  'in-tree-zombie': true,
  dead: true,
  thread: true,
  external: true,
};

/** 'in-tree-alive' -> 'IN_TREE_ALIVE': how the proto enums name a kind or strategy. */
const enumSuffix = (name: string) => name.toUpperCase().replaceAll('-', '_');

test('every TargetKind of the model has exactly one module, named for it', () => {
  const names = TARGET_KINDS.map((k) => k.name);
  assert.deepEqual([...names].sort(), Object.keys(MODEL_KINDS).sort());
  assert.equal(new Set(names).size, names.length);
  for (const name of names) assert.equal(kindOf(name).name, name);
});

/**
 * `numbers` (by name) are exactly the values of a proto enum but UNSPECIFIED (0), each
 * under `${prefix}_${NAME}`.
 */
function assertProtoEnum(numbers: Map<string, number>, pbEnum: object, prefix: string): void {
  const pb = pbEnum as Record<string, number>;
  for (const [name, n] of numbers) assert.equal(n, pb[`${prefix}_${enumSuffix(name)}`], name);
  const pbNumbers = Object.values(pb).filter((v) => typeof v === 'number' && v !== 0);
  assert.deepEqual([...numbers.values()].sort(), pbNumbers.sort());
}

test('each kind carries its image.proto enum value', () => {
  assertProtoEnum(
    new Map(TARGET_KINDS.map((k) => [k.name, k.protoNumber])),
    pidfdcr.image.TargetKind,
    'TARGET',
  );
  for (const k of TARGET_KINDS) assert.equal(kindOfProto(k.protoNumber), k);
  assert.equal(kindOfProto(0), undefined);
});

test('each open strategy is owned by one kind and carries its protocol.proto enum value', () => {
  assertProtoEnum(
    new Map(OPEN_STRATEGIES.map((s) => [s.name, s.wireNumber])),
    pidfdcr.protocol.Strategy,
    'STRATEGY',
  );
  assert.equal(new Set(OPEN_STRATEGIES.map((s) => s.name)).size, OPEN_STRATEGIES.length);
  for (const s of OPEN_STRATEGIES) {
    assert.equal(strategyOfWire(s.wireNumber), s);
    assert.equal(TARGET_KINDS.filter((k) => k.strategies.includes(s)).length, 1, s.name);
    for (const field of Object.keys(s.wireFields)) {
      assert.ok(field in pidfdcr.protocol.OpenHow.prototype, `${s.name}: no OpenHow.${field}`);
    }
  }
  assert.equal(strategyOfWire(0), undefined);
});

/** A distinct non-default value of each wire type (the u64 one needs all 64 bits). */
const SAMPLE: Record<WireType, (i: number) => unknown> = {
  int: (i) => 1000 + i,
  u64: () => '18446744073709551615',
  string: (i) => `boot-${i}`,
  bool: () => true,
};

function sampleHow(name: OpenHow['strategy']): OpenHow {
  const s = strategyOf({ strategy: name } as OpenHow);
  const how: Record<string, unknown> = { strategy: name };
  const fields = Object.entries(s.wireFields) as [string, WireType][];
  fields.forEach(([field, type], i) => (how[field] = SAMPLE[type](i)));
  return how as OpenHow;
}

test('the wire mapping of every strategy round-trips through a TaskPlan frame', () => {
  const opens = OPEN_STRATEGIES.map((s, i) => ({
    fileId: i,
    flags: 2,
    how: sampleHow(s.name),
    pidfdFlags: 0,
    installAt: [{ fd: 10 + i, cloexec: true }],
  }));
  const empty = { temps: [], opens: [], sends: [], receives: [] };
  const plan: TaskPlan = {
    pid: 100,
    ppid: 0,
    comm: 'x',
    reservedFds: [],
    workerChildren: [],
    zombieChildren: [],
    threads: [],
    steps: { 'open-alive': { ...empty, opens }, dead: empty },
    killTemps: [],
    fds: [],
  };
  const back = decodeToWorker(encodeToWorker({ type: 'ASSIGN', plan }));
  assert.deepEqual(back, { type: 'ASSIGN', plan });
});

test('plans of the sample image use only registered strategies, and use every one', () => {
  const image = sampleImage();
  const used = new Set<string>();
  for (const externalDead of [false, true]) {
    for (const f of planRestore(image, { externalDead }).files) {
      assert.equal(strategyOf(f.how).name, f.how.strategy);
      used.add(f.how.strategy);
    }
  }
  assert.deepEqual([...used].sort(), OPEN_STRATEGIES.map((s) => s.name).sort());
});

test('a pidfd is recognised by exactly one kind, and as that kind', () => {
  const tree: TreeFacts = {
    taskIno: new Map([
      [100, 1000n],
      [400, 4000n],
    ]),
    zombies: new Set([400]),
    threadOwner: new Map([[201, 100]]),
  };
  const probes = {
    dead: () => ({ exitStatus: 9, cgroupId: 1n }),
    external: (pid: number) => ({ comm: 'sleep', zombie: false, tgid: pid }),
  };
  const cases: [pid: number, ino: bigint, kind: TargetKind][] = [
    [100, 1000n, 'in-tree-alive'],
    [400, 4000n, 'in-tree-zombie'],
    [201, 2010n, 'thread'],
    [-1, 3000n, 'dead'],
    [777, 7770n, 'external'],
  ];
  // One case per kind: a new kind needs its case here.
  assert.deepEqual(cases.map((c) => c[2]).sort(), Object.keys(MODEL_KINDS).sort());
  for (const [pid, ino, kind] of cases) {
    const s: Sighting = {
      holder: 100,
      pidfd: { fd: 3, pid, ino, nsPids: pid > 0 ? [pid] : [], flags: 2 } as Sighting['pidfd'],
      tree,
      probes,
      where: 'task 100 fd 3',
    };
    const found = TARGET_KINDS.flatMap((k) => {
      const t = k.recognise(s);
      if (t !== undefined) assert.equal(t.kind, k.name, `${k.name} recognised a ${t.kind}`);
      return t === undefined ? [] : [t.kind];
    });
    assert.deepEqual(found, [kind], `pid ${pid}`);
  }
});

test('the owned fields name their owners as the validation messages say', () => {
  assert.equal(ownersOf('exitStatus'), 'dead');
  assert.equal(ownersOf('zombie'), 'external');
  assert.equal(ownersOf('tgid'), 'external');
});

test('an unknown kind is refused with PCR_ERR_IMAGE_INVALID naming it, wherever it comes from', () => {
  const refused = (fn: () => unknown, where: string) =>
    assert.throws(fn, (e: unknown) => {
      assert.ok(e instanceof ImageError, String(e));
      assert.equal(e.code, 'PCR_ERR_IMAGE_INVALID');
      assert.equal(e.where, where);
      assert.match(e.message, /'nested-ns' is not a target kind/);
      return true;
    });
  refused(() => kindOf('nested-ns'), 'kind');
  const image = sampleImage();
  (image.targets[1] as { kind: string }).kind = 'nested-ns';
  refused(() => validateImage(image, { fdLimit: 1024 }), 'targets[1].kind');
  refused(() => encodeImage(image), 'targets[1].kind');
  refused(() => planRestore(image), 'kind');
});

test('open strategies open through the injected ops and name what is missing', () => {
  const opened: number[] = [];
  const ops: OpenOps = {
    restoredPid: (dumped) => 5000 + dumped,
    restoredTid: (dumped) => (dumped === 201 ? 5201 : undefined),
    tempPid: (groupId) => (groupId === 0 ? 6000 : undefined),
    openPid: (pid) => (opened.push(pid), 40),
    openExternal: (target, _as, bootId) => (opened.push(target.pid), bootId === BOOT_ID ? 41 : -1),
  };
  const as = { flags: 2, pidfdFlags: 0 };
  const open = (how: OpenHow) => strategyOf(how).open(how, as, ops);
  assert.equal(open({ strategy: 'pidfd-open', taskPid: 100 }), 40);
  assert.equal(open({ strategy: 'thread-open', taskPid: 200, tid: 201 }), 40);
  assert.equal(open({ strategy: 'temp', groupId: 0 }), 40);
  const ext = { pid: 777, ino: '5000', bootId: BOOT_ID, zombie: false };
  assert.equal(open({ strategy: 'external-reopen', ...ext }), 41);
  assert.deepEqual(opened, [5100, 5201, 6000, 777]);
  const internal = (fn: () => unknown, text: RegExp) =>
    assert.throws(
      fn,
      (e: unknown) =>
        e instanceof PcrError && e.code === 'PCR_ERR_INTERNAL' && text.test(e.message),
    );
  internal(() => open({ strategy: 'thread-open', taskPid: 200, tid: 202 }), /dumped tid 202/);
  internal(() => open({ strategy: 'temp', groupId: 1 }), /group 1/);
  internal(
    () => strategyOf({ strategy: 'bogus' } as unknown as OpenHow),
    /'bogus' is not an open strategy/,
  );
  // thread-open always asks for PIDFD_THREAD (O_EXCL); the others add nothing.
  assert.deepEqual(
    OPEN_STRATEGIES.filter((s) => s.pidfdFlags !== 0).map((s) => [s.name, s.pidfdFlags]),
    [['thread-open', 0o200]],
  );
});
