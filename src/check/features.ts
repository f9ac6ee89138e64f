/**
 * Which features of dump and restore work here, from the probes (pure: a unit test
 * feeds it results). A feature works when every probe it needs worked (`needs`), or
 * any one of them for `anyOf` features. `needed` features make the check's verdict:
 * `pidfd-cr check` exits 0 only when all of them work.
 */
import type { ProbeId, ProbeResult } from './probes.js';

export interface FeatureSpec {
  command: 'dump' | 'restore';
  /** Stable id (docs/cli.md "check"). */
  id: string;
  /** What works or not, for people. */
  text: string;
  needs: readonly ProbeId[];
  /** Works when any one of `needs` works (default: all of them). */
  anyOf?: boolean;
  /** Part of what dump and restore need: a failure makes the check fail. */
  needed: boolean;
}

export const FEATURES: readonly FeatureSpec[] = [
  {
    command: 'dump',
    id: 'freeze',
    text: 'freeze and read a tree of our descendants (ptrace)',
    needs: ['ptrace'],
    needed: true,
  },
  {
    command: 'dump',
    id: 'freeze-others',
    text: 'freeze and read a tree that is not our descendant (ptrace scope)',
    needs: ['ptrace', 'ptrace-others'],
    needed: false,
  },
  {
    command: 'dump',
    id: 'pidfds',
    text: 'pidfds and their targets (pidfd_open, fdinfo)',
    needs: ['pidfd-open'],
    needed: true,
  },
  {
    command: 'dump',
    id: 'shared-files',
    text: 'which pidfds share one open file (kcmp)',
    needs: ['kcmp'],
    needed: true,
  },
  {
    command: 'dump',
    id: 'identity',
    text: 'target identity by pidfs inode (pidfs file handles)',
    needs: ['pidfs-handles'],
    needed: true,
  },
  {
    command: 'dump',
    id: 'exit-status',
    text: 'exit status of dead targets (PIDFD_GET_INFO)',
    needs: ['pidfd-exit-info'],
    needed: true,
  },
  {
    command: 'dump',
    id: 'thread',
    text: 'PIDFD_THREAD pidfds',
    needs: ['pidfd-thread'],
    needed: true,
  },
  {
    command: 'restore',
    id: 'workers',
    text: 'worker processes and their control link (ZeroMQ ipc, SCM_RIGHTS, subreaper)',
    needs: ['zeromq-ipc', 'scm-rights', 'child-subreaper'],
    needed: true,
  },
  {
    command: 'restore',
    id: 'alive',
    text: 'pidfds to alive and zombie targets (pidfd_open)',
    needs: ['pidfd-open'],
    needed: true,
  },
  {
    command: 'restore',
    id: 'dead',
    text: 'pidfds to dead targets with their exit status (PIDFD_GET_INFO)',
    needs: ['pidfd-open', 'pidfd-exit-info'],
    needed: true,
  },
  {
    command: 'restore',
    id: 'thread',
    text: 'PIDFD_THREAD pidfds',
    needs: ['pidfd-thread'],
    needed: true,
  },
  {
    command: 'restore',
    id: 'external',
    text: 'targets outside the tree, reopened by identity (pidfs file handles)',
    needs: ['pidfs-handles'],
    needed: true,
  },
  {
    command: 'restore',
    id: 'verify',
    text: 'verification from /proc (kcmp, pidfs inodes, PIDFD_GET_INFO)',
    needs: ['kcmp', 'pidfs-handles', 'pidfd-get-info'],
    needed: true,
  },
  {
    command: 'restore',
    id: 'same-pids',
    text: 'restore --same-pids: tasks at their dumped pids (clone3 set_tid)',
    needs: ['clone3-set-tid'],
    needed: false,
  },
  {
    command: 'restore',
    id: 'pidns-new',
    text: 'restore --pidns new: the root as init of a new pid namespace (its ns_last_pid)',
    needs: ['clone3-set-tid', 'ns-last-pid'],
    needed: false,
  },
];

export interface FeatureResult {
  command: FeatureSpec['command'];
  id: string;
  text: string;
  works: boolean;
  needed: boolean;
  needs: ProbeId[];
  /** The needed probes that failed. */
  failed: ProbeId[];
}

export function judgeFeatures(probes: readonly ProbeResult[]): FeatureResult[] {
  const ok = new Map(probes.map((p) => [p.id, p.ok]));
  return FEATURES.map((f) => {
    const failed = f.needs.filter((id) => ok.get(id) !== true);
    const works = f.anyOf ? failed.length < f.needs.length : failed.length === 0;
    return {
      command: f.command,
      id: f.id,
      text: f.text,
      works,
      needed: f.needed,
      needs: [...f.needs],
      failed,
    };
  });
}
