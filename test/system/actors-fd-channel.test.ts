/**
 * The fd channel: 300 pidfds in two SCM_RIGHTS messages (253 + 47) arrive paired with
 * their file ids, each the same open file description as the one sent (kcmp), close-on-
 * exec; a peer whose SO_PEERCRED pid is not expected is refused.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  listenForFds,
  sendFiles,
  fdSocketPath,
  jsonFdPayload,
  type ReceivedFile,
} from '../../src/actors/fd-channel.js';
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
  const done = new Promise<void>((resolve, reject) => {
    const listener = listenForFds(path, {
      codec: jsonFdPayload,
      isExpectedPeer: (pid) => pid === process.pid,
      onFiles(files, peer) {
        got.push(...files);
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
    sendFiles(path, sent, jsonFdPayload);
    await done;
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
      codec: jsonFdPayload,
      isExpectedPeer: () => false,
      onFiles: (files) => {
        received += files.length;
        files.forEach((f) => closeQuiet(f.fd));
      },
      onError: (err) => {
        listener.close();
        resolve(err);
      },
    });
  });
  try {
    try {
      sendFiles(path, [{ fileId: 1, fd: pidfd }], jsonFdPayload);
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
