/**
 * Seeing from outside that a worker exec'd its host program: before execve the worker
 * connects to `<rundir>/exec.sock` with a close-on-exec socket and sends nothing; execve
 * closes it. End of file on that connection means the exec worked, unless the worker
 * first sent one byte there: its execve failed (it reports that over the control link).
 * The program may have run and exited already when the end of file is read (/bin/true):
 * that is still an exec. A worker killed in the instant between its connect and its
 * execve would count as exec'd too; nothing else ends a worker there.
 */
import {
  acceptSeqpacket,
  closeQuiet,
  listenSeqpacket,
  peerCred,
  recvFds,
} from '../../native/index.js';
import { watchReadable, type Watch } from '../sys/readiness.js';

interface Conn {
  fd: number;
  dumped: number;
  pid: number;
  watch: Watch;
}

export class ExecWatch {
  private readonly listenFd: number;
  private readonly listening: Watch;
  private readonly conns = new Map<number, Conn>();

  /**
   * @param dumpedOf  the dumped pid of restored worker `pid`, if it is one
   * @param onExec    worker `dumped` exec'd
   */
  constructor(
    path: string,
    private readonly dumpedOf: (pid: number) => number | undefined,
    private readonly onExec: (dumped: number) => void,
  ) {
    this.listenFd = listenSeqpacket(path);
    this.listening = watchReadable(this.listenFd, () => this.acceptAll());
  }

  private acceptAll(): void {
    for (;;) {
      let fd: number | null;
      try {
        fd = acceptSeqpacket(this.listenFd);
      } catch {
        return;
      }
      if (fd === null) return;
      const pid = peerCred(fd).pid;
      const dumped = this.dumpedOf(pid);
      if (dumped === undefined || peerCred(fd).uid !== process.getuid!()) {
        closeQuiet(fd);
        continue;
      }
      const conn: Conn = { fd, dumped, pid, watch: watchReadable(fd, () => this.check(conn)) };
      this.conns.set(fd, conn);
      this.check(conn);
    }
  }

  /** Reads what is there; at end of file decides whether the worker exec'd. */
  private check(conn: Conn): void {
    const r = this.read(conn);
    if (!r.eof) return;
    this.drop(conn);
    if (!r.failed) this.onExec(conn.dumped);
  }

  /** Drains the connection: end of file, and whether the worker said its execve failed. */
  private read(conn: Conn): { eof: boolean; failed: boolean } {
    let failed = false;
    try {
      for (let m = recvFds(conn.fd); m !== null; m = recvFds(conn.fd)) {
        m.fds.forEach(closeQuiet);
        if (m.payload.length === 0) return { eof: true, failed };
        failed = true;
      }
    } catch {
      return { eof: true, failed };
    }
    return { eof: false, failed };
  }

  /** Worker `dumped` exited: decide about its exec first (its end of file may be queued). */
  flush(dumped: number): void {
    this.acceptAll();
    for (const c of [...this.conns.values()]) if (c.dumped === dumped) this.checkExited(c);
  }

  /** At its exit a pending connection has its end of file: exec'd, unless it died first. */
  private checkExited(conn: Conn): void {
    const r = this.read(conn);
    this.drop(conn);
    if (r.eof && !r.failed) this.onExec(conn.dumped);
  }

  private drop(conn: Conn): void {
    conn.watch.stop();
    closeQuiet(conn.fd);
    this.conns.delete(conn.fd);
  }

  close(): void {
    this.listening.stop();
    for (const c of [...this.conns.values()]) this.drop(c);
    closeQuiet(this.listenFd);
  }
}
