/**
 * The ZMTP 3.0 codec of the worker's control link (src/protocol/zmtp.ts): greeting,
 * READY/ERROR, frames with short and long sizes and MORE, and the streaming decoder fed in
 * pieces of every size. The real peer (libzmq's ROUTER) is test/system/zmtp-link.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  GREETING_BYTES,
  MAX_FRAME_BYTES,
  ZmtpDecoder,
  ZmtpError,
  checkGreeting,
  encodeCommand,
  encodeError,
  encodeFrame,
  encodeGreeting,
  encodeReady,
  parseCommand,
  parseReady,
  type ZmtpEvent,
} from '../../src/protocol/zmtp.js';

/** A ROUTER's side of a handshake as libzmq sends it (Identity empty). */
const routerHello = (): Buffer =>
  Buffer.concat([encodeGreeting(), encodeReady({ 'Socket-Type': 'ROUTER', Identity: '' })]);

/** Feeds `bytes` to a fresh decoder in pieces of `step` bytes; all events. */
function decodeIn(bytes: Buffer, step: number, decoder = new ZmtpDecoder()): ZmtpEvent[] {
  const events: ZmtpEvent[] = [];
  for (let i = 0; i < bytes.length; i += step)
    events.push(...decoder.push(Buffer.from(bytes.subarray(i, i + step))));
  return events;
}

const messages = (events: ZmtpEvent[]): string[][] =>
  events.flatMap((e) => (e.type === 'message' ? [e.frames.map((f) => f.toString())] : []));

const zmtpError = (what: RegExp) => (err: unknown) => {
  assert.ok(err instanceof ZmtpError, String(err));
  assert.equal(err.code, 'PCR_ERR_RESTORE');
  assert.match(err.what, what);
  assert.equal(err.message, `ZMTP: ${err.what}`);
  return true;
};

test('greeting: 64 bytes, signature ff…7f, version 3.0, mechanism NULL, not as-server', () => {
  const g = encodeGreeting();
  assert.equal(g.length, GREETING_BYTES);
  assert.equal(g[0], 0xff);
  assert.deepEqual([...g.subarray(1, 9)], [0, 0, 0, 0, 0, 0, 0, 0]);
  assert.equal(g[9], 0x7f);
  assert.deepEqual([g[10], g[11]], [3, 0]);
  assert.equal(g.subarray(12, 32).toString('latin1'), 'NULL'.padEnd(20, '\0'));
  assert.equal(g[32], 0);
  assert.ok(g.subarray(33).every((b) => b === 0));
  assert.deepEqual(checkGreeting(g), { major: 3, minor: 0, mechanism: 'NULL', asServer: false });
  // libzmq puts its routing id length in the padding and speaks 3.1: both are fine.
  const zmq = Buffer.from(g);
  zmq.writeBigUInt64BE(1n, 1);
  zmq[11] = 1;
  assert.equal(checkGreeting(zmq)?.minor, 1);
});

test('frames: short up to 255 bytes, long (8-byte size) above, MORE and COMMAND flags', () => {
  assert.deepEqual([...encodeFrame(Buffer.from('ab'))], [0, 2, 0x61, 0x62]);
  assert.deepEqual([...encodeFrame(Buffer.from('ab'), true)], [1, 2, 0x61, 0x62]);
  assert.deepEqual([...encodeFrame(Buffer.alloc(0))], [0, 0]);
  const short = encodeFrame(Buffer.alloc(255, 7));
  assert.deepEqual([short[0], short[1], short.length], [0, 255, 257]);
  const long = encodeFrame(Buffer.alloc(256, 7), true);
  assert.equal(long[0], 0x03);
  assert.equal(long.readBigUInt64BE(1), 256n);
  assert.equal(long.length, 9 + 256);
  const cmd = encodeCommand('PING', Buffer.from([0, 10]));
  assert.deepEqual([...cmd], [0x04, 7, 4, ...Buffer.from('PING'), 0, 10]);
  assert.deepEqual(parseCommand(cmd.subarray(2)), { name: 'PING', data: Buffer.from([0, 10]) });
});

test('READY: properties as name-size name value-size(4, big-endian) value, names any case', () => {
  const ready = encodeReady({ 'Socket-Type': 'DEALER', Identity: '1234' });
  const body = ready.subarray(2);
  assert.equal(ready[0], 0x04);
  assert.equal(ready[1], body.length);
  const { name, data } = parseCommand(body);
  assert.equal(name, 'READY');
  assert.deepEqual(
    [...data],
    [
      11,
      ...Buffer.from('Socket-Type'),
      0,
      0,
      0,
      6,
      ...Buffer.from('DEALER'),
      8,
      ...Buffer.from('Identity'),
      0,
      0,
      0,
      4,
      ...Buffer.from('1234'),
    ],
  );
  const props = parseReady(data);
  assert.equal(props.get('socket-type')?.toString(), 'DEALER');
  assert.equal(props.get('identity')?.toString(), '1234');
  assert.throws(
    () => parseReady(data.subarray(0, data.length - 1)),
    zmtpError(/Identity of 4 bytes runs past/),
  );
  assert.throws(() => parseReady(data.subarray(0, 5)), zmtpError(/truncated property at byte 0/));
});

test('the decoder: a handshake and messages, byte by byte and in any pieces, long frames', () => {
  const big = Buffer.alloc(100_000);
  for (let i = 0; i < big.length; i++) big[i] = i % 251;
  const stream = Buffer.concat([
    routerHello(),
    encodeFrame(Buffer.from('one')),
    encodeFrame(Buffer.from('two-a'), true),
    encodeFrame(Buffer.alloc(0), true),
    encodeFrame(Buffer.from('two-c')),
    encodeFrame(big),
    encodeFrame(Buffer.alloc(300, 0x41)),
  ]);
  for (const step of [1, 2, 3, 7, 63, 64, 65, 255, 4096, stream.length]) {
    const events = decodeIn(stream, step);
    assert.deepEqual(
      events.map((e) => e.type),
      ['greeting', 'ready', 'message', 'message', 'message', 'message'],
      `pieces of ${step}`,
    );
    const ready = events[1] as Extract<ZmtpEvent, { type: 'ready' }>;
    assert.equal(ready.socketType, 'ROUTER');
    const msgs = events.filter((e) => e.type === 'message');
    assert.deepEqual(
      msgs.slice(0, 2).map((m) => m.frames.map(String)),
      [['one'], ['two-a', '', 'two-c']],
    );
    assert.ok(msgs[2]!.frames[0]!.equals(big), `the 100 KB frame, pieces of ${step}`);
    assert.equal(msgs[3]!.frames[0]!.toString(), 'A'.repeat(300));
  }
});

test('the decoder waits for a frame split anywhere, header included', () => {
  const d = new ZmtpDecoder();
  assert.deepEqual(
    d.push(routerHello()).map((e) => e.type),
    ['greeting', 'ready'],
  );
  const long = encodeFrame(Buffer.alloc(1000, 9));
  assert.deepEqual(d.push(long.subarray(0, 1)), []);
  assert.deepEqual(d.push(long.subarray(1, 5)), []);
  assert.deepEqual(d.push(long.subarray(5, 500)), []);
  const x = encodeFrame(Buffer.from('x'));
  // The rest of the long frame and the first byte of the next one.
  const [m, more] = d.push(Buffer.concat([long.subarray(500), x.subarray(0, 1)]));
  assert.equal(m?.type, 'message');
  assert.equal(more, undefined);
  assert.deepEqual(messages(d.push(x.subarray(1, 2))), []);
  assert.deepEqual(messages(d.push(x.subarray(2))), [['x']]);
});

test('a bad signature is refused at its first byte, not after 64', () => {
  assert.throws(
    () => new ZmtpDecoder().push(Buffer.from('GET / HTTP/1.1\r\n')),
    zmtpError(/^bad greeting signature: first byte 0x47, not 0xff$/),
  );
  const g = encodeGreeting();
  g[9] = 0x01; // ZMTP 1.0's "identity follows" byte
  const d = new ZmtpDecoder();
  assert.deepEqual(d.push(g.subarray(0, 9)), []);
  assert.throws(() => d.push(g.subarray(9, 10)), zmtpError(/byte 9 is 0x01, not 0x7f/));
});

test('a peer older than ZMTP 3 is refused as soon as its version byte is in', () => {
  for (const major of [1, 2]) {
    const g = encodeGreeting();
    g[10] = major;
    assert.throws(
      () => decodeIn(g.subarray(0, 11), 1),
      zmtpError(new RegExp(`^the peer speaks ZMTP version ${major}: 3.0 or later is needed$`)),
    );
  }
});

test('another mechanism than NULL is refused by name', () => {
  const g = encodeGreeting();
  g.fill(0, 12, 32).write('CURVE', 12, 'latin1');
  assert.throws(() => new ZmtpDecoder().push(g), zmtpError(/mechanism is "CURVE": only NULL/));
});

test('an ERROR command ends the handshake with its reason', () => {
  const stream = Buffer.concat([encodeGreeting(), encodeError('Invalid identity')]);
  assert.throws(() => decodeIn(stream, 5), zmtpError(/^the peer sent ERROR: "Invalid identity"$/));
  // and after it too
  const later = Buffer.concat([routerHello(), encodeError('bye')]);
  assert.throws(() => new ZmtpDecoder().push(later), zmtpError(/sent ERROR: "bye"/));
});

test('what may not come before READY, and READY that is not acceptable', () => {
  const before = (frame: Buffer): Buffer => Buffer.concat([encodeGreeting(), frame]);
  assert.throws(
    () => new ZmtpDecoder().push(before(encodeFrame(Buffer.from('hi')))),
    zmtpError(/^a message frame before READY$/),
  );
  assert.throws(
    () => new ZmtpDecoder().push(before(encodeCommand('PING', Buffer.from([0, 0])))),
    zmtpError(/^the peer sent "PING" before READY$/),
  );
  assert.throws(
    () => new ZmtpDecoder().push(before(encodeReady({ Identity: 'x' }))),
    zmtpError(/^READY without a Socket-Type$/),
  );
  assert.throws(
    () => new ZmtpDecoder().push(before(encodeReady({ 'Socket-Type': 'PUB' }))),
    zmtpError(/^the peer is a "PUB" socket: a DEALER talks to DEALER, ROUTER, REP$/),
  );
  assert.throws(
    () => new ZmtpDecoder(['ROUTER']).push(before(encodeReady({ 'socket-type': 'DEALER' }))),
    zmtpError(/"DEALER" socket: a DEALER talks to ROUTER$/),
  );
  assert.throws(
    () => new ZmtpDecoder().push(before(Buffer.from([0x04, 3, 9, 0x41, 0x42]))),
    zmtpError(/^a malformed command \(name of 9 bytes in 3\)$/),
  );
});

test('bad frames: reserved flag bits, a command with MORE, a size past the limit', () => {
  const d = (): ZmtpDecoder => {
    const dec = new ZmtpDecoder();
    dec.push(routerHello());
    return dec;
  };
  assert.throws(
    () => d().push(Buffer.from([0x08, 0])),
    zmtpError(/^frame flags 0x08 have reserved bits set$/),
  );
  assert.throws(
    () => d().push(Buffer.from([0x05, 0])),
    zmtpError(/^a command frame with MORE set$/),
  );
  const huge = Buffer.alloc(9);
  huge[0] = 0x02;
  huge.writeBigUInt64BE(BigInt(MAX_FRAME_BYTES) + 1n, 1);
  assert.throws(
    () => d().push(huge),
    zmtpError(/^a frame of \d+ bytes \(at most \d+ are taken\)$/),
  );
  huge.writeBigUInt64BE(0xffffffffffffffffn, 1);
  assert.throws(() => d().push(huge), zmtpError(/^a frame of 18446744073709551615 bytes/));
});

test('after the handshake, commands other than ERROR are events (PING for a PONG)', () => {
  const dec = new ZmtpDecoder();
  dec.push(routerHello());
  const events = dec.push(
    Buffer.concat([
      encodeCommand('PING', Buffer.from([0, 1, 0x63])),
      encodeFrame(Buffer.from('m')),
    ]),
  );
  assert.deepEqual(
    events.map((e) => (e.type === 'command' ? [e.type, e.name, [...e.data]] : [e.type])),
    [['command', 'PING', [0, 1, 0x63]], ['message']],
  );
});
