/**
 * The fd channel: 300 pidfds in two SCM_RIGHTS messages (253 + 47) arrive paired with
 * their file ids, each the same open file description as the one sent (kcmp), close-on-
 * exec; a peer whose SO_PEERCRED pid is not expected is refused.
 */
import { fdSocketPath } from '../../src/protocol/paths.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { listenForFds, sendFdMessages, type FdMessage } from '../../src/sys/fd-channel.js';

interface ReceivedFile {
  fileId: number;
  fd: number;
}

/** Messages of at most 253 fds, each naming its file ids as JSON. */
function messagesOf(files: ReceivedFile[]): FdMessage[] {
  const out: FdMessage[] = [];
  for (let i = 0; i < files.length; i += 253) {
    const chunk = files.slice(i, i + 253);
    out.push({
      payload: Buffer.from(JSON.stringify(chunk.map((f) => f.fileId))),
      fds: chunk.map((f) => f.fd),
    });
  }
  return out;
}

function filesOf(msg: FdMessage): ReceivedFile[] {
  const ids = JSON.parse(msg.payload.toString()) as number[];
  assert.equal(ids.length, msg.fds.length);
  return ids.map((fileId, i) => ({ fileId, fd: msg.fds[i]! }));
}
import { pidfdOpen, closeQuiet, kcmpFile, getCloexec } from '../../native/index.js';

function withRundir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'pcr-fdch-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('300 pidfds arrive in order, same open files, cloexec', async (t) => {
  const path = fdSocketPath(withRundir(t), 7);
  const sent: ReceivedFile[] = Array.from({ length: 300 }, (_, i) => ({
    fileId: 1000 + i,
    fd: pidfdOpen(process.pid),
  }));
  const got: ReceivedFile[] = [];
  const peers = new Set<number>();
  let messages = 0;
  const done = new Promise<void>((resolve, reject) => {
    const listener = listenForFds(path, {
      isExpectedPeer: (pid) => pid === process.pid,
      onMessage(msg, peer) {
        messages += 1;
        got.push(...filesOf(msg));
        peers.add(peer);
        if (got.length === sent.length) {
          listener.close();
          resolve();
        }
      },
      onError: reject,
    });
  });
  try {
    sendFdMessages(path, messagesOf(sent));
    await done;
    assert.equal(messages, 2);
    assert.deepEqual([...peers], [process.pid]);
    assert.deepEqual(
      got.map((f) => f.fileId),
      sent.map((f) => f.fileId),
    );
    got.forEach((f, i) => {
      assert.equal(kcmpFile(process.pid, f.fd, process.pid, sent[i]!.fd), 0);
      assert.equal(getCloexec(f.fd), true);
    });
  } finally {
    [...sent, ...got].forEach((f) => closeQuiet(f.fd));
  }
});

test('an unexpected peer is refused and its fds are not taken', async (t) => {
  const path = fdSocketPath(withRundir(t), 8);
  const pidfd = pidfdOpen(process.pid);
  let received = 0;
  const refused = new Promise<Error>((resolve) => {
    const listener = listenForFds(path, {
      isExpectedPeer: () => false,
      onMessage: (msg) => {
        received += msg.fds.length;
        msg.fds.forEach(closeQuiet);
      },
      onError: (err) => {
        listener.close();
        resolve(err);
      },
    });
  });
  try {
    try {
      sendFdMessages(path, messagesOf([{ fileId: 1, fd: pidfd }]));
    } catch {
      // the receiver may close before we sent: EPIPE/ECONNRESET is fine here
    }
    const err = await refused;
    assert.match(err.message, new RegExp(`refused fds from pid ${process.pid}`));
    assert.equal(received, 0);
  } finally {
    closeQuiet(pidfd);
  }
});
