/**
 * The worker's control link (src/protocol/zmtp-dealer.ts: ZMTP 3.0 over a koffi stream
 * socket) against a real zeromq ROUTER, configured as the coordinator's
 * (src/protocol/zmq-link.ts), and against peers that break ZMTP: messages both ways, a
 * 100 KB frame, multipart, the ROUTER closing, garbage, sends queued before the handshake
 * and let go on close. The DEALER runs in a process of its own (test/fixtures/zmtp-echo.ts)
 * where it matters; restored workers are checked from /proc to load no zeromq.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Router } from 'zeromq';
import { ZmtpDealer, LINGER_MS } from '../../src/protocol/zmtp-dealer.js';
import { encodeGreeting, encodeReady, encodeError, encodeFrame } from '../../src/protocol/zmtp.js';
import { restoreImage } from '../../src/index.js';
import { buildAndDump } from '../helpers/restore-run.js';
import { sharedScm } from '../fixtures/scenarios.js';

const ECHO = fileURLToPath(new URL('../fixtures/zmtp-echo.js', import.meta.url));
const BUNDLE = fileURLToPath(new URL('../../src/worker/bundle.cjs', import.meta.url));

type After = { after(fn: () => unknown): void };

function privateDir(t: After): string {
  const dir = mkdtempSync(join(tmpdir(), 'pcr-zmtp-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A ROUTER as the coordinator binds it; a receive that waits 20 s fails the test. */
async function router(t: After, path: string): Promise<Router> {
  const r = new Router({
    linger: 0,
    mandatory: true,
    handover: false,
    sendTimeout: 0,
    receiveTimeout: 20_000,
  });
  await r.bind(`ipc://${path}`);
  t.after(() => r.close());
  return r;
}

/** The echo fixture as a child process: its exit and its stdout. */
function echoProcess(t: After, path: string, id: string) {
  const child = spawn(process.execPath, [ECHO, path, id], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => child.kill('SIGKILL'));
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  return { child, exited, out: () => out };
}

const mapsOf = (pid: number): string => readFileSync(`/proc/${pid}/maps`, 'utf8');

test('a DEALER process and a zeromq ROUTER: routing id, both ways, 100 KB frames, multipart', async (t) => {
  const path = join(privateDir(t), 'ctl');
  const r = await router(t, path);
  const echo = echoProcess(t, path, '4242');
  const [id, hi] = await r.receive();
  assert.equal(id!.toString(), '4242');
  assert.equal(hi!.toString(), 'hi');
  // The process speaks ZMTP itself: no zeromq addon, no libzmq in it.
  assert.doesNotMatch(mapsOf(echo.child.pid!), /zeromq|libzmq/);

  const big = Buffer.alloc(100 * 1024);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7) % 256;
  const cases: Array<[Buffer[], Buffer]> = [
    [[Buffer.from('ping')], Buffer.from('echo:1:ping')],
    [[big], Buffer.concat([Buffer.from('echo:1:'), big])],
    [
      [Buffer.from('a'), Buffer.alloc(0), Buffer.alloc(300, 0x62)],
      Buffer.from(`echo:3:a${'b'.repeat(300)}`),
    ],
    [[Buffer.alloc(0)], Buffer.from('echo:1:')],
  ];
  for (const [frames, expected] of cases) {
    await r.send(['4242', ...frames]);
    const [from, answer, extra] = await r.receive();
    assert.equal(from!.toString(), '4242');
    assert.equal(extra, undefined, 'one frame per message');
    assert.ok(
      answer!.equals(expected),
      `answer of ${answer!.length} bytes to ${frames.length} frames`,
    );
  }
  // Many at once, in order.
  for (let i = 0; i < 200; i++) await r.send(['4242', `m${i}`]);
  for (let i = 0; i < 200; i++) assert.equal((await r.receive())[1]!.toString(), `echo:1:m${i}`);
  await r.send(['4242', 'bye']);
  assert.deepEqual(await echo.exited, [0, null]);
  assert.equal(echo.out(), '');
});

test('the ROUTER closing: the DEALER reports the peer gone, once, as a PcrError', async (t) => {
  const path = join(privateDir(t), 'ctl');
  const r = await router(t, path);
  const echo = echoProcess(t, path, '7');
  assert.equal((await r.receive())[1]!.toString(), 'hi');
  r.close();
  assert.deepEqual(await echo.exited, [3, null]);
  assert.equal(
    echo.out(),
    `error PcrError PCR_ERR_RESTORE ${path}: the peer closed the connection\n`,
  );
});

/** A peer that writes `reply` to each connection and reads whatever comes. */
async function rawPeer(t: After, path: string, reply: Buffer, closeAfter = false): Promise<Server> {
  const server = createServer((c: Socket) => {
    c.on('data', () => {});
    c.on('error', () => {});
    c.write(reply);
    if (closeAfter) c.end();
  });
  server.listen(path);
  await once(server, 'listening');
  t.after(() => new Promise((resolve) => server.close(resolve)));
  return server;
}

const socketFds = (): number =>
  readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`).startsWith('socket:');
    } catch {
      return false;
    }
  }).length;

test('a peer that breaks ZMTP: one typed error naming what was wrong, the socket closed', async (t) => {
  const dir = privateDir(t);
  const greeting = encodeGreeting();
  const v2 = Buffer.from(greeting);
  v2[10] = 2;
  const curve = Buffer.from(greeting);
  curve.fill(0, 12, 32).write('CURVE', 12);
  const ready = (type: string): Buffer => encodeReady({ 'Socket-Type': type, Identity: '' });
  const cases: Array<[string, Buffer, RegExp, boolean?]> = [
    [
      'http',
      Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n'),
      /^ZMTP: bad greeting signature: first byte 0x48, not 0xff$/,
    ],
    [
      'zmtp 1.0',
      Buffer.from([0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x01]),
      /^ZMTP: bad greeting signature: byte 9 is 0x01/,
    ],
    [
      'zmtp 2',
      v2.subarray(0, 12),
      /^ZMTP: the peer speaks ZMTP version 2: 3\.0 or later is needed$/,
    ],
    ['curve', curve, /^ZMTP: the peer's mechanism is "CURVE": only NULL is spoken$/],
    [
      'error',
      Buffer.concat([greeting, encodeError('Invalid socket type')]),
      /^ZMTP: the peer sent ERROR: "Invalid socket type"$/,
    ],
    ['pub', Buffer.concat([greeting, ready('PUB')]), /^ZMTP: the peer is a "PUB" socket/],
    [
      'message first',
      Buffer.concat([greeting, encodeFrame(Buffer.from('x'))]),
      /^ZMTP: a message frame before READY$/,
    ],
    [
      'bad flags',
      Buffer.concat([greeting, ready('ROUTER'), Buffer.from([0xf0, 1, 0])]),
      /^ZMTP: frame flags 0xf0 have reserved bits set$/,
    ],
    ['closed mid-greeting', greeting.subarray(0, 20), /: the peer closed the connection$/, true],
  ];
  const before = socketFds();
  for (const [name, reply, expected, closeAfter] of cases) {
    const path = join(dir, `ctl-${name.replace(/\W/g, '-')}`);
    await rawPeer(t, path, reply, closeAfter);
    const messages: Buffer[][] = [];
    const errors: Error[] = [];
    let failed!: () => void;
    const gotError = new Promise<void>((resolve) => (failed = resolve));
    const dealer = new ZmtpDealer(path, '9', {
      onMessage: (frames) => messages.push(frames),
      onError: (err) => {
        errors.push(err);
        failed();
      },
    });
    const queued = dealer.send(Buffer.from('never sent'));
    await gotError;
    await queued; // a queued send settles when the link breaks
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(errors.length, 1, name);
    assert.match(errors[0]!.message, expected, name);
    assert.equal((errors[0] as { code?: string }).code, 'PCR_ERR_RESTORE', name);
    assert.deepEqual(messages, [], name);
    await dealer.close(); // after a failure: nothing more to do
  }
  // Every dealer's socket is closed (the peers' ends are the servers', closed by t.after).
  for (let i = 0; i < 100 && socketFds() > before + cases.length; i++)
    await new Promise((resolve) => setTimeout(resolve, 20));
  assert.ok(socketFds() <= before + cases.length, `${socketFds()} sockets, ${before} before`);
});

test('sends before the handshake are queued, and close() lets them go', async (t) => {
  const path = join(privateDir(t), 'ctl');
  const r = await router(t, path);
  const dealer = new ZmtpDealer(path, '55', {
    onMessage: () => {},
    onError: (e) => assert.fail(e),
  });
  const sent = [0, 1, 2].map((i) => dealer.send(Buffer.from(`early ${i}`)));
  await dealer.close(); // at once: the handshake has not even started
  await Promise.all(sent);
  for (let i = 0; i < 3; i++) {
    const [id, frame] = await r.receive();
    assert.deepEqual([id!.toString(), frame!.toString()], ['55', `early ${i}`]);
  }
  assert.equal(await dealer.send(Buffer.from('late')), undefined, 'a send after close is dropped');
});

test('a peer that never answers the greeting: close() gives up after the linger', async (t) => {
  const path = join(privateDir(t), 'ctl');
  await rawPeer(t, path, Buffer.alloc(0));
  const dealer = new ZmtpDealer(path, '1', { onMessage: () => {}, onError: (e) => assert.fail(e) });
  const sent = dealer.send(Buffer.from('stuck'));
  const t0 = performance.now();
  await dealer.close();
  await sent;
  const ms = performance.now() - t0;
  t.diagnostic(`close took ${ms.toFixed(0)} ms (linger ${LINGER_MS} ms)`);
  assert.ok(ms >= LINGER_MS - 5 && ms < LINGER_MS + 2000, `${ms} ms`);
});

test('no listener, or a path too long for sun_path: a SyscallError from connect', (t) => {
  const dir = privateDir(t);
  const handlers = { onMessage: () => {}, onError: (e: Error) => assert.fail(e) };
  assert.throws(() => new ZmtpDealer(join(dir, 'none'), '1', handlers), {
    name: 'SyscallError',
    syscall: 'connect',
    errnoName: 'ENOENT',
  });
  assert.throws(() => new ZmtpDealer(join(dir, 'x'.repeat(120)), '1', handlers), {
    name: 'SyscallError',
    syscall: 'connect',
    errnoName: 'ENAMETOOLONG',
  });
});

/**
 * A listener whose backlog is full (listen(0) and one connection nobody accepted): it
 * checks that a connect now fails with EAGAIN, says "full", accepts after 300 ms, reads
 * the greeting it gets (printed in hex) and answers with `argv[2]` (hex).
 */
const FULL_BACKLOG = `
import socket, sys, time
path, reply = sys.argv[1], bytes.fromhex(sys.argv[2])
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.bind(path); s.listen(0)
filler = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); filler.connect(path)
probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); probe.setblocking(False)
try:
    probe.connect(path); print('not full', flush=True); sys.exit(1)
except BlockingIOError:
    print('full', flush=True)
time.sleep(0.3)
s.accept()
conn, _ = s.accept()
got = b''
while len(got) < 64: got += conn.recv(64 - len(got))
print(got.hex(), flush=True)
conn.sendall(reply)
while conn.recv(4096): pass
`;

test('a full listen backlog (EAGAIN on connect) is retried until the peer accepts', async (t) => {
  const path = join(privateDir(t), 'ctl');
  const reply = Buffer.concat([
    encodeGreeting(),
    encodeReady({ 'Socket-Type': 'ROUTER', Identity: '' }),
    encodeFrame(Buffer.from('accepted')),
  ]);
  const py = spawn('/usr/bin/python3', ['-c', FULL_BACKLOG, path, reply.toString('hex')], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.after(() => py.kill('SIGKILL'));
  let out = '';
  py.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  for (let i = 0; i < 500 && !out.includes('\n'); i++)
    await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(out, 'full\n');
  let dealer!: ZmtpDealer;
  const got = await new Promise<string>((resolve, reject) => {
    dealer = new ZmtpDealer(path, '3', {
      onMessage: ([frame]) => resolve(frame!.toString()),
      onError: reject,
    });
  });
  assert.equal(got, 'accepted');
  assert.equal(out.split('\n')[1], encodeGreeting().toString('hex'));
  await dealer.close();
  assert.deepEqual(await once(py, 'exit'), [0, null]);
});

test('the peer closing with our bytes unread: what it sent is delivered, then ECONNRESET', async (t) => {
  const path = join(privateDir(t), 'ctl');
  const reply = Buffer.concat([
    encodeGreeting(),
    encodeReady({ 'Socket-Type': 'ROUTER', Identity: '' }),
    encodeFrame(Buffer.from('last words')),
  ]);
  // Accepts, sends `reply` without reading anything, waits, closes: a reset for us.
  const script = `
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.bind(sys.argv[1]); s.listen(1)
print('listening', flush=True)
conn, _ = s.accept()
conn.sendall(bytes.fromhex(sys.argv[2]))
time.sleep(0.2)
conn.close()
`;
  const py = spawn('/usr/bin/python3', ['-c', script, path, reply.toString('hex')], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.after(() => py.kill('SIGKILL'));
  await once(py.stdout, 'data');
  const messages: string[] = [];
  const err = await new Promise<Error>((resolve) => {
    const dealer = new ZmtpDealer(path, '5', {
      onMessage: ([frame]) => messages.push(frame!.toString()),
      onError: resolve,
    });
    void dealer.send(Buffer.from('unread'));
  });
  assert.deepEqual(messages, ['last words']);
  assert.match(err.message, /^recv \(stream socket \d+\) failed: ECONNRESET \(104\)$/);
  assert.deepEqual(await once(py, 'exit'), [0, null]);
});

test('workers load no zeromq: not in the worker bundle, not mapped in a restored worker', async (t) => {
  assert.doesNotMatch(readFileSync(BUNDLE, 'utf8'), /zeromq|libzmq/);
  const { image, dir } = await buildAndDump(t, sharedScm);
  const stop = new AbortController();
  const maps = new Map<number, string>();
  await restoreImage(image, {
    hold: true,
    signal: stop.signal,
    runDirParent: dir,
    onVerified: ({ pidMap }) => {
      for (const { restored } of pidMap.pids) maps.set(restored, mapsOf(restored));
      stop.abort('checked');
    },
  });
  assert.equal(maps.size, image.tasks.length);
  for (const [pid, text] of maps) {
    assert.match(text, /koffi/, `worker ${pid} maps koffi (the check can see addons)`);
    assert.doesNotMatch(text, /zeromq|libzmq/, `worker ${pid}`);
  }
});
