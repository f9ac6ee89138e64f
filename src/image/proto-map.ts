/**
 * The one place that converts between the generated protobuf messages (gen/pb.js) and
 * the in-memory model (model.ts). uint64 fields travel as {low, high} pairs and become
 * bigint without ever passing through a JS number. Converting a decoded message checks
 * what the model's types need (enums in range, host present, 64-bit values that fit);
 * the semantic rules live in validate.ts.
 */
import { pidfdcr } from '../../gen/pb.js';
import { ImageError } from '../errors.js';
import type {
  FdEntry,
  HostContext,
  Image,
  PidfdFile,
  Target,
  TargetKind,
  Task,
  TaskState,
} from '../model/image.js';
import { FORMAT_VERSION } from '../model/image.js';
import { kindOf, TARGET_KINDS as KIND_MODULES } from '../kinds/registry.js';

const pb = pidfdcr.image;
type PbImage = pidfdcr.image.Image.$Properties;
type PbTask = pidfdcr.image.Task.$Properties;
type PbTarget = pidfdcr.image.Target.$Properties;
type PbFile = pidfdcr.image.PidfdFile.$Properties;
type PbHost = pidfdcr.image.HostContext.$Properties;
/** What the generated code takes and gives for a uint64 field. */
type PbU64 = NonNullable<PbFile['ino']>;

const TASK_STATES: ReadonlyMap<TaskState, number> = new Map<TaskState, number>([
  ['running', pb.TaskState.TASK_RUNNING],
  ['stopped', pb.TaskState.TASK_STOPPED],
  ['zombie', pb.TaskState.TASK_ZOMBIE],
]);

/** Each kind module carries its image.proto enum value (src/kinds). */
const TARGET_KINDS: ReadonlyMap<TargetKind, number> = new Map<TargetKind, number>(
  KIND_MODULES.map((k) => [k.name, k.protoNumber]),
);

const U64_MAX = (1n << 64n) - 1n;

/** bigint → the {low, high} pair protobufjs writes as a varint (LongBits.from accepts it). */
export function bigintToU64(value: bigint, where: string): PbU64 {
  if (value < 0n || value > U64_MAX) throw new ImageError(where, `${value} is not a uint64`);
  const low = Number(value & 0xffffffffn) | 0;
  const high = Number(value >> 32n) | 0;
  return { low, high, unsigned: true } as unknown as PbU64;
}

/** A decoded uint64 (Long, or a number when no long library is loaded) → bigint, exactly. */
export function u64ToBigint(value: PbU64 | null | undefined, where: string): bigint {
  if (value === null || value === undefined) return 0n;
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new ImageError(where, `uint64 ${value} was decoded lossily`);
    }
    return BigInt(value);
  }
  return (BigInt(value.high >>> 0) << 32n) | BigInt(value.low >>> 0);
}

function enumName<T>(table: ReadonlyMap<T, number>, value: number, where: string): T {
  for (const [name, num] of table) if (num === value) return name;
  if (value === 0) throw new ImageError(where, 'is unspecified (0)');
  const known = [...table.values()].join(', ');
  throw new ImageError(where, `enum value ${value} is not one of ${known}`);
}

function enumNumber<T>(table: ReadonlyMap<T, number>, value: T, where: string): number {
  const num = table.get(value);
  if (num === undefined) throw new ImageError(where, `'${String(value)}' is not a known value`);
  return num;
}

/** `{ exitStatus }` when the optional field was present, `{}` otherwise (no undefined key). */
const optionalStatus = (v: number | null | undefined): { exitStatus?: number } =>
  v === null || v === undefined ? {} : { exitStatus: v };

// ---------------------------------------------------------------- model -> protobuf

export function imageToProto(image: Image): PbImage {
  return {
    host: hostToProto(image.host),
    rootPid: image.rootPid,
    tasks: image.tasks.map((t, i) => taskToProto(t, `tasks[${i}]`)),
    files: image.files.map((f, i) => fileToProto(f, `files[${i}]`)),
    targets: image.targets.map((t, i) => targetToProto(t, `targets[${i}]`)),
  };
}

function hostToProto(h: HostContext): PbHost {
  if (!Number.isSafeInteger(h.dumpTimeMs) || h.dumpTimeMs < 0) {
    throw new ImageError('host.dump_time_ms', `${h.dumpTimeMs} is not a time in ms`);
  }
  return {
    bootId: h.bootId,
    kernelRelease: h.kernelRelease,
    dumpTimeMs: bigintToU64(BigInt(h.dumpTimeMs), 'host.dump_time_ms'),
    toolVersion: h.toolVersion,
    freezeMethod: h.freezeMethod,
    hostname: h.hostname,
  };
}

function taskToProto(t: Task, where: string): PbTask {
  const m: PbTask = {
    pid: t.pid,
    ppid: t.ppid,
    tgid: t.tgid,
    tids: t.tids,
    comm: t.comm,
    argv: t.argv,
    state: enumNumber(TASK_STATES, t.state, `${where}.state`),
    procState: t.procState,
    nsPids: t.nsPids,
    fds: t.fds.map((f) => ({ fd: f.fd, fileId: f.fileId, cloexec: f.cloexec })),
  };
  if (t.exitStatus !== undefined) m.exitStatus = t.exitStatus;
  return m;
}

function fileToProto(f: PidfdFile, where: string): PbFile {
  return { id: f.id, flags: f.flags, ino: bigintToU64(f.ino, `${where}.ino`) };
}

function targetToProto(t: Target, where: string): PbTarget {
  const m: PbTarget = {
    ino: bigintToU64(t.ino, `${where}.ino`),
    kind: kindOf(t.kind, `${where}.kind`).protoNumber,
    pid: t.pid,
    nsPids: t.nsPids,
    taskPid: t.taskPid,
    tid: t.tid,
    exitCgroupId: bigintToU64(t.exitCgroupId, `${where}.exit_cgroup_id`),
    tgid: t.tgid,
    zombie: t.zombie,
    comm: t.comm,
  };
  if (t.exitStatus !== undefined) m.exitStatus = t.exitStatus;
  return m;
}

// ---------------------------------------------------------------- protobuf -> model

/** Decoded message → model; `formatVersion` comes from the container header. */
export function imageFromProto(m: PbImage, formatVersion = FORMAT_VERSION): Image {
  if (!m.host) throw new ImageError('host', 'the host context is missing');
  return {
    formatVersion,
    host: hostFromProto(m.host),
    rootPid: m.rootPid ?? 0,
    tasks: (m.tasks ?? []).map((t, i) => taskFromProto(t, `tasks[${i}]`)),
    files: (m.files ?? []).map((f, i) => fileFromProto(f, `files[${i}]`)),
    targets: (m.targets ?? []).map((t, i) => targetFromProto(t, `targets[${i}]`)),
  };
}

function hostFromProto(h: PbHost): HostContext {
  const ms = u64ToBigint(h.dumpTimeMs, 'host.dump_time_ms');
  if (ms > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new ImageError('host.dump_time_ms', `${ms} ms is not a plausible time`);
  }
  return {
    bootId: h.bootId ?? '',
    kernelRelease: h.kernelRelease ?? '',
    dumpTimeMs: Number(ms),
    toolVersion: h.toolVersion ?? '',
    freezeMethod: h.freezeMethod ?? '',
    hostname: h.hostname ?? '',
  };
}

function taskFromProto(t: PbTask, where: string): Task {
  return {
    pid: t.pid ?? 0,
    ppid: t.ppid ?? 0,
    tgid: t.tgid ?? 0,
    tids: [...(t.tids ?? [])],
    comm: t.comm ?? '',
    argv: [...(t.argv ?? [])],
    state: enumName(TASK_STATES, t.state ?? 0, `${where}.state`),
    procState: t.procState ?? '',
    ...optionalStatus(t.exitStatus),
    nsPids: [...(t.nsPids ?? [])],
    fds: (t.fds ?? []).map((f): FdEntry => ({
      fd: f.fd ?? 0,
      fileId: f.fileId ?? 0,
      cloexec: f.cloexec ?? false,
    })),
  };
}

function fileFromProto(f: PbFile, where: string): PidfdFile {
  return { id: f.id ?? 0, flags: f.flags ?? 0, ino: u64ToBigint(f.ino, `${where}.ino`) };
}

function targetFromProto(t: PbTarget, where: string): Target {
  return {
    ino: u64ToBigint(t.ino, `${where}.ino`),
    kind: enumName(TARGET_KINDS, t.kind ?? 0, `${where}.kind`),
    pid: t.pid ?? 0,
    nsPids: [...(t.nsPids ?? [])],
    taskPid: t.taskPid ?? 0,
    tid: t.tid ?? 0,
    ...optionalStatus(t.exitStatus),
    exitCgroupId: u64ToBigint(t.exitCgroupId, `${where}.exit_cgroup_id`),
    tgid: t.tgid ?? 0,
    zombie: t.zombie ?? false,
    comm: t.comm ?? '',
  };
}
