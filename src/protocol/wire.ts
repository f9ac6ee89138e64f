/**
 * Pure mapping between the TS messages/plan types and the protobuf frames of
 * proto/protocol.proto. Every frame is one `ToWorker` or `ToCoordinator` message; the
 * SCM_RIGHTS payload is one `FdTransfer`. Decoding rejects frames that do not say what
 * they are (PcrError PCR_ERR_INTERNAL naming the frame).
 */
import protobuf from 'protobufjs/minimal.js';
import { pidfdcr } from '../../gen/pb.js';
import { PcrError } from '../errors.js';
import type { OpenStrategy, WireType } from '../kinds/kind.js';
import { strategyOf, strategyOfWire } from '../kinds/registry.js';
import type { PcrErrorCode } from '../errors.js';
import type {
  AuthMessage,
  CoordinatorMessage,
  Failure,
  FdReport,
  FdTransfer,
  PidMap,
  PidPair,
  WorkerMessage,
} from './messages.js';
import type {
  BroadcastPhase,
  ExitStatusSource,
  FdInstall,
  OpenHow,
  Phase,
  PhaseSteps,
  TaskPlan,
} from '../plan/types.js';

const pb = pidfdcr.protocol;
/** A uint64 field as the generated code types it (number or long.js Long). */
type U64 = NonNullable<pidfdcr.protocol.ReportedFd.$Properties['ino']>;

const PHASE_TO_PB: Record<Phase, pidfdcr.protocol.Phase> = {
  spawn: pb.Phase.PHASE_SPAWN,
  'open-alive': pb.Phase.PHASE_OPEN_ALIVE,
  dead: pb.Phase.PHASE_DEAD,
  'kill-temp': pb.Phase.PHASE_KILL_TEMP,
  finalize: pb.Phase.PHASE_FINALIZE,
  verify: pb.Phase.PHASE_VERIFY,
};

function bad(what: string): never {
  throw new PcrError('PCR_ERR_INTERNAL', `protocol: ${what}`);
}

export function phaseFromPb(p: pidfdcr.protocol.Phase | null | undefined): Phase {
  const found = (Object.keys(PHASE_TO_PB) as Phase[]).find((k) => PHASE_TO_PB[k] === p);
  return found ?? bad(`unknown phase ${String(p)}`);
}

function broadcastPhaseFromPb(p: pidfdcr.protocol.Phase | null | undefined): BroadcastPhase {
  const phase = phaseFromPb(p);
  return phase === 'spawn' ? bad('phase spawn is never broadcast') : phase;
}

const u64 = (v: U64 | null | undefined): string => (v == null ? '0' : v.toString());
/** A decimal uint64 string as an unsigned Long: never narrowed to a double. */
const toU64 = (s: string): U64 => protobuf.util.LongBits.from(s).toLong(true) as unknown as U64;
const pairs = (list: readonly PidPair[]) => list.map((p) => ({ ...p }));
const pairsFromPb = (list: readonly pidfdcr.protocol.PidPair.$Properties[] | null | undefined) =>
  (list ?? []).map((p) => ({ dumped: p.dumped ?? 0, restored: p.restored ?? 0 }));
const installs = (list: readonly pidfdcr.protocol.FdInstall.$Properties[] | null | undefined) =>
  (list ?? []).map((i): FdInstall => ({ fd: i.fd ?? 0, cloexec: i.cloexec ?? false }));

// ---- OpenHow ---------------------------------------------------------------------------

// Each strategy names its OpenHow fields and their wire types (src/kinds, wireFields).
type PbHow = Record<string, unknown>;

const WIRE_ENCODE: Record<WireType, (v: unknown) => unknown> = {
  int: (v) => v,
  u64: (v) => toU64(v as string),
  string: (v) => v,
  bool: (v) => v,
};

const WIRE_DECODE: Record<WireType, (v: unknown) => unknown> = {
  int: (v) => (v as number | null | undefined) ?? 0,
  u64: (v) => u64(v as U64 | null | undefined),
  string: (v) => (v as string | null | undefined) ?? '',
  bool: (v) => (v as boolean | null | undefined) ?? false,
};

const wireFields = (s: OpenStrategy) => Object.entries(s.wireFields) as [string, WireType][];

function howToPb(how: OpenHow): pidfdcr.protocol.OpenHow.$Properties {
  const s = strategyOf(how);
  const out: PbHow = { strategy: s.wireNumber };
  const fields = how as unknown as Record<string, unknown>;
  for (const [name, type] of wireFields(s)) out[name] = WIRE_ENCODE[type](fields[name]);
  return out as pidfdcr.protocol.OpenHow.$Properties;
}

function howFromPb(h: pidfdcr.protocol.OpenHow.$Properties | null | undefined): OpenHow {
  const s = h?.strategy == null ? undefined : strategyOfWire(h.strategy);
  if (s === undefined) return bad(`open step without a strategy`);
  const out: PbHow = { strategy: s.name };
  const fields = h as unknown as PbHow;
  for (const [name, type] of wireFields(s)) out[name] = WIRE_DECODE[type](fields[name]);
  return out as OpenHow;
}

// ---- TaskPlan --------------------------------------------------------------------------

const SOURCE_TO_PB: Record<ExitStatusSource, pidfdcr.protocol.StatusSource> = {
  recorded: pb.StatusSource.STATUS_RECORDED,
  'assumed-sigkill': pb.StatusSource.STATUS_ASSUMED_SIGKILL,
};

function sourceFromPb(s: pidfdcr.protocol.StatusSource | null | undefined): ExitStatusSource {
  if (s === pb.StatusSource.STATUS_RECORDED) return 'recorded';
  if (s === pb.StatusSource.STATUS_ASSUMED_SIGKILL) return 'assumed-sigkill';
  return bad(`temp step without a status source`);
}

function stepsToPb(s: PhaseSteps): pidfdcr.protocol.PhaseSteps.$Properties {
  return {
    temps: s.temps.map((t) => ({
      groupId: t.groupId,
      ino: toU64(t.ino),
      exitStatus: t.exitStatus,
      statusSource: SOURCE_TO_PB[t.statusSource],
    })),
    opens: s.opens.map((o) => ({
      fileId: o.fileId,
      flags: o.flags,
      how: howToPb(o.how),
      installAt: o.installAt,
      pidfdFlags: o.pidfdFlags,
      ...(o.reopenFlags === undefined ? {} : { reopenFlags: o.reopenFlags }),
    })),
    sends: s.sends.map((x) => ({ to: x.to, fileIds: x.fileIds })),
    receives: s.receives.map((x) => ({ from: x.from, files: x.files })),
  };
}

function stepsFromPb(s: pidfdcr.protocol.PhaseSteps.$Properties | null | undefined): PhaseSteps {
  return {
    temps: (s?.temps ?? []).map((t) => ({
      groupId: t.groupId ?? 0,
      ino: u64(t.ino),
      exitStatus: t.exitStatus ?? 0,
      statusSource: sourceFromPb(t.statusSource),
    })),
    opens: (s?.opens ?? []).map((o) => ({
      fileId: o.fileId ?? 0,
      flags: o.flags ?? 0,
      how: howFromPb(o.how),
      pidfdFlags: o.pidfdFlags ?? 0,
      ...(o.reopenFlags == null ? {} : { reopenFlags: o.reopenFlags }),
      installAt: installs(o.installAt),
    })),
    sends: (s?.sends ?? []).map((x) => ({ to: x.to ?? 0, fileIds: [...(x.fileIds ?? [])] })),
    receives: (s?.receives ?? []).map((x) => ({
      from: x.from ?? 0,
      files: (x.files ?? []).map((f) => ({
        fileId: f.fileId ?? 0,
        installAt: installs(f.installAt),
      })),
    })),
  };
}

export function taskPlanToPb(p: TaskPlan): pidfdcr.protocol.TaskPlan.$Properties {
  return {
    pid: p.pid,
    ppid: p.ppid,
    comm: p.comm,
    reservedFds: p.reservedFds,
    workerChildren: p.workerChildren.map((c) => ({ pid: c.pid, reservedFds: c.reservedFds })),
    zombieChildren: p.zombieChildren.map((z) => ({ ...z })),
    threads: p.threads,
    openAlive: stepsToPb(p.steps['open-alive']),
    dead: stepsToPb(p.steps.dead),
    killTemps: p.killTemps,
    fds: p.fds.map((f) => ({ ...f })),
  };
}

export function taskPlanFromPb(p: pidfdcr.protocol.TaskPlan.$Properties): TaskPlan {
  return {
    pid: p.pid ?? 0,
    ppid: p.ppid ?? 0,
    comm: p.comm ?? '',
    reservedFds: [...(p.reservedFds ?? [])],
    workerChildren: (p.workerChildren ?? []).map((c) => ({
      pid: c.pid ?? 0,
      reservedFds: [...(c.reservedFds ?? [])],
    })),
    zombieChildren: (p.zombieChildren ?? []).map((z) => ({
      pid: z.pid ?? 0,
      exitStatus: z.exitStatus ?? 0,
      comm: z.comm ?? '',
    })),
    threads: [...(p.threads ?? [])],
    steps: { 'open-alive': stepsFromPb(p.openAlive), dead: stepsFromPb(p.dead) },
    killTemps: [...(p.killTemps ?? [])],
    fds: (p.fds ?? []).map((f) => ({
      fd: f.fd ?? 0,
      fileId: f.fileId ?? 0,
      cloexec: f.cloexec ?? false,
    })),
  };
}

// ---- coordinator -> worker -------------------------------------------------------------

function pidMapFromPb(m: {
  pids?: pidfdcr.protocol.PidPair.$Properties[] | null;
  tids?: pidfdcr.protocol.PidPair.$Properties[] | null;
}): PidMap {
  return { pids: pairsFromPb(m.pids), tids: pairsFromPb(m.tids) };
}

export function encodeToWorker(msg: CoordinatorMessage): Uint8Array {
  let props: pidfdcr.protocol.ToWorker.$Properties;
  switch (msg.type) {
    case 'ASSIGN':
      props = { assign: { plan: taskPlanToPb(msg.plan) } };
      break;
    case 'GO':
      props = { go: { pids: pairs(msg.pidMap.pids), tids: pairs(msg.pidMap.tids) } };
      break;
    case 'TEARDOWN':
      props = { teardown: { reason: msg.reason } };
      break;
    case 'HANDOFF':
      props = {
        handoff: {
          socketPath: msg.socketPath,
          batches: msg.batches.map((b) => ({ payload: b.payload, fds: b.fds })),
          execArgv: msg.execArgv,
          execEnv: msg.execEnv,
        },
      };
      break;
  }
  return pb.ToWorker.encode(props).finish();
}

export function decodeToWorker(bytes: Uint8Array): CoordinatorMessage {
  const m = pb.ToWorker.decode(bytes);
  switch (m.msg) {
    case 'assign':
      return {
        type: 'ASSIGN',
        plan: taskPlanFromPb(m.assign?.plan ?? bad('ASSIGN without a plan')),
      };
    case 'go':
      return { type: 'GO', pidMap: pidMapFromPb(m.go ?? {}) };
    case 'teardown':
      return { type: 'TEARDOWN', reason: m.teardown?.reason ?? '' };
    case 'handoff':
      return {
        type: 'HANDOFF',
        socketPath: m.handoff?.socketPath ?? '',
        batches: (m.handoff?.batches ?? []).map((b) => ({
          payload: b.payload ?? new Uint8Array(0),
          fds: [...(b.fds ?? [])],
        })),
        execArgv: [...(m.handoff?.execArgv ?? [])],
        execEnv: [...(m.handoff?.execEnv ?? [])],
      };
    default:
      return bad('a ToWorker frame with no message');
  }
}

// ---- worker -> coordinator -------------------------------------------------------------

function failureToPb(pid: number, f: Failure): pidfdcr.protocol.Failed.$Properties {
  return {
    pid,
    code: f.code,
    syscall: f.syscall ?? '',
    errno: f.errno ?? 0,
    errnoName: f.errnoName ?? '',
    message: f.message,
    phase: PHASE_TO_PB[f.phase],
  };
}

function failureFromPb(f: pidfdcr.protocol.Failed.$Properties): Failure {
  return {
    code: (f.code || 'PCR_ERR_INTERNAL') as PcrErrorCode,
    message: f.message ?? '',
    phase: phaseFromPb(f.phase),
    ...(f.syscall ? { syscall: f.syscall, errno: f.errno ?? 0, errnoName: f.errnoName ?? '' } : {}),
  };
}

function reportToPb(r: FdReport): pidfdcr.protocol.FdReport.$Properties {
  return {
    pid: r.pid,
    restoredPid: r.restoredPid,
    fds: r.fds.map((f) => ({
      fd: f.fd,
      flags: f.flags,
      cloexec: f.cloexec,
      ino: toU64(f.ino),
      targetPid: f.targetPid,
      fileClass: f.fileClass,
      ...(f.exitStatus === undefined ? {} : { exitStatus: f.exitStatus }),
      ...(f.targetState === undefined ? {} : { targetState: f.targetState }),
      ...(f.targetExitCode === undefined ? {} : { targetExitCode: f.targetExitCode }),
    })),
  };
}

function reportFromPb(r: pidfdcr.protocol.FdReport.$Properties): FdReport {
  return {
    pid: r.pid ?? 0,
    restoredPid: r.restoredPid ?? 0,
    fds: (r.fds ?? []).map((f) => ({
      fd: f.fd ?? 0,
      flags: f.flags ?? 0,
      cloexec: f.cloexec ?? false,
      ino: u64(f.ino),
      targetPid: f.targetPid ?? 0,
      fileClass: f.fileClass ?? '',
      ...(f.exitStatus == null ? {} : { exitStatus: f.exitStatus }),
      ...(f.targetState == null ? {} : { targetState: f.targetState }),
      ...(f.targetExitCode == null ? {} : { targetExitCode: f.targetExitCode }),
    })),
  };
}

export function encodeToCoordinator(msg: WorkerMessage): Uint8Array {
  let props: pidfdcr.protocol.ToCoordinator.$Properties;
  switch (msg.type) {
    case 'WORKER_HELLO':
      props = {
        hello: { pid: msg.pid, restoredPid: msg.restoredPid, nonce: msg.nonce ?? new Uint8Array() },
      };
      break;
    case 'CHILDREN_SPAWNED':
      props = {
        childrenSpawned: {
          pid: msg.pid,
          children: pairs(msg.children),
          threads: pairs(msg.threads),
        },
      };
      break;
    case 'STEP':
      props = { step: { pid: msg.pid, phase: PHASE_TO_PB[msg.phase] } };
      break;
    case 'WORKER_FAILED':
      props = { failed: failureToPb(msg.pid, msg.failure) };
      break;
    case 'FD_REPORT':
      props = { fdReport: reportToPb(msg.report) };
      break;
    case 'TRACE':
      props = { trace: { pid: msg.pid, ...msg.trace } };
      break;
    case 'HANDED_OFF':
      props = { handedOff: { pid: msg.pid } };
      break;
  }
  return pb.ToCoordinator.encode(props).finish();
}

export function decodeToCoordinator(bytes: Uint8Array): WorkerMessage {
  const m = pb.ToCoordinator.decode(bytes);
  switch (m.msg) {
    case 'hello':
      return {
        type: 'WORKER_HELLO',
        pid: m.hello?.pid ?? 0,
        restoredPid: m.hello?.restoredPid ?? 0,
        ...(m.hello?.nonce?.length ? { nonce: Uint8Array.from(m.hello.nonce) } : {}),
      };
    case 'childrenSpawned':
      return {
        type: 'CHILDREN_SPAWNED',
        pid: m.childrenSpawned?.pid ?? 0,
        children: pairsFromPb(m.childrenSpawned?.children),
        threads: pairsFromPb(m.childrenSpawned?.threads),
      };
    case 'step':
      return {
        type: 'STEP',
        pid: m.step?.pid ?? 0,
        phase: broadcastPhaseFromPb(m.step?.phase),
      };
    case 'failed':
      return { type: 'WORKER_FAILED', pid: m.failed?.pid ?? 0, failure: failureFromPb(m.failed!) };
    case 'fdReport':
      return { type: 'FD_REPORT', report: reportFromPb(m.fdReport!) };
    case 'trace': {
      const t = m.trace!;
      return {
        type: 'TRACE',
        pid: t.pid ?? 0,
        trace: {
          machine: t.machine ?? '',
          from: t.from ?? '',
          to: t.to ?? '',
          event: t.event ?? '',
          details: t.details ?? '',
          timeMs: t.timeMs ?? 0,
          ...(t.kind ? { kind: t.kind } : {}),
          ...(t.data ? { data: t.data } : {}),
        },
      };
    }
    case 'handedOff':
      return { type: 'HANDED_OFF', pid: m.handedOff?.pid ?? 0 };
    default:
      return bad('a ToCoordinator frame with no message');
  }
}

// ---- worker -> coordinator, auth socket -------------------------------------------------

export function encodeAuth(msg: AuthMessage): Uint8Array {
  const props: pidfdcr.protocol.ToAuth.$Properties =
    msg.type === 'AUTH_PROOF'
      ? { proof: { pid: msg.pid, nonce: msg.nonce } }
      : { startupFailed: failureToPb(msg.pid, msg.failure) };
  return pb.ToAuth.encode(props).finish();
}

export function decodeAuth(bytes: Uint8Array): AuthMessage {
  const m = pb.ToAuth.decode(bytes);
  switch (m.msg) {
    case 'proof':
      return {
        type: 'AUTH_PROOF',
        pid: m.proof?.pid ?? 0,
        nonce: Uint8Array.from(m.proof?.nonce ?? []),
      };
    case 'startupFailed':
      return {
        type: 'STARTUP_FAILED',
        pid: m.startupFailed?.pid ?? 0,
        failure: failureFromPb(m.startupFailed!),
      };
    default:
      return bad('a ToAuth message with no message');
  }
}

// ---- SCM_RIGHTS payload ----------------------------------------------------------------

export function encodeFdTransfer(t: FdTransfer): Uint8Array {
  return pb.FdTransfer.encode({
    from: t.from,
    phase: PHASE_TO_PB[t.phase],
    fileIds: t.fileIds,
    messageId: t.messageId ?? '',
  }).finish();
}

export function decodeFdTransfer(bytes: Uint8Array): FdTransfer {
  const m = pb.FdTransfer.decode(bytes);
  return {
    from: m.from,
    phase: broadcastPhaseFromPb(m.phase),
    fileIds: [...m.fileIds],
    ...(m.messageId ? { messageId: m.messageId } : {}),
  };
}
