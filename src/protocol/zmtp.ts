/**
 * ZMTP 3.0 (rfc.zeromq.org/spec/23) with the NULL mechanism, as far as a DEALER needs it:
 * the greeting, the READY and ERROR commands, and frames. Pure: bytes in, bytes or events
 * out. The socket around it is zmtp-dealer.ts; the peer is libzmq's ROUTER (zeromq.js in
 * the coordinator), which answers a 3.0 greeting in 3.0.
 *
 * Wire format (all sizes big-endian):
 *   greeting  = %xFF 8*OCTET %x7F  major minor  mechanism(20, "NULL" + NULs)  as-server(1)  filler(31)
 *   frame     = flags size body     flags: bit 0 MORE, bit 1 LONG (8-byte size, else 1), bit 2 COMMAND
 *   command   = name-size(1) name data
 *   READY     = "READY" *(name-size(1) name value-size(4) value)
 *   ERROR     = "ERROR" reason-size(1) reason
 * A message is one or more frames, every frame but the last with MORE.
 */
import { PcrError } from '../errors.js';

export const GREETING_BYTES = 64;
/** The version we announce. libzmq 4.3 speaks 3.1 and answers a 3.0 peer in 3.0. */
export const ZMTP_MAJOR = 3;
export const ZMTP_MINOR = 0;
/** A frame longer than this is refused as garbage (a control message is a few KB). */
export const MAX_FRAME_BYTES = 256 * 1024 * 1024;

const FLAG_MORE = 0x01;
const FLAG_LONG = 0x02;
const FLAG_COMMAND = 0x04;
const FLAGS_RESERVED = 0xf8;
const MECHANISM_BYTES = 20;

/**
 * The peer broke ZMTP (a bad greeting, an unexpected or malformed command, a bad frame)
 * or refused the handshake (ERROR). `what` says which, in words.
 */
export class ZmtpError extends PcrError {
  constructor(readonly what: string) {
    super('PCR_ERR_RESTORE', `ZMTP: ${what}`);
    this.name = 'ZmtpError';
  }
}

/** Our 64-byte greeting: ZMTP 3.0, mechanism NULL, not as server. */
export function encodeGreeting(): Buffer {
  const g = Buffer.alloc(GREETING_BYTES);
  g[0] = 0xff;
  g[9] = 0x7f;
  g[10] = ZMTP_MAJOR;
  g[11] = ZMTP_MINOR;
  g.write('NULL', 12, 'latin1');
  return g;
}

function frame(body: Uint8Array, flags: number): Buffer {
  const long = body.length > 255;
  const head = long ? 9 : 2;
  const out = Buffer.allocUnsafe(head + body.length);
  if (long) {
    out[0] = flags | FLAG_LONG;
    out.writeBigUInt64BE(BigInt(body.length), 1);
  } else {
    out[0] = flags;
    out[1] = body.length;
  }
  out.set(body, head);
  return out;
}

/** One message frame (`more`: another frame of the same message follows). */
export function encodeFrame(payload: Uint8Array, more = false): Buffer {
  return frame(payload, more ? FLAG_MORE : 0);
}

/** A command frame: name-size, name, data. */
export function encodeCommand(name: string, data: Uint8Array = Buffer.alloc(0)): Buffer {
  const n = Buffer.from(name, 'latin1');
  const body = Buffer.allocUnsafe(1 + n.length + data.length);
  body[0] = n.length;
  n.copy(body, 1);
  body.set(data, 1 + n.length);
  return frame(body, FLAG_COMMAND);
}

/** READY with these metadata properties (e.g. Socket-Type, Identity). */
export function encodeReady(properties: Readonly<Record<string, string | Uint8Array>>): Buffer {
  const parts: Buffer[] = [];
  for (const [name, value] of Object.entries(properties)) {
    const n = Buffer.from(name, 'latin1');
    const v = typeof value === 'string' ? Buffer.from(value, 'latin1') : Buffer.from(value);
    const head = Buffer.allocUnsafe(1 + n.length + 4);
    head[0] = n.length;
    n.copy(head, 1);
    head.writeUInt32BE(v.length, 1 + n.length);
    parts.push(head, v);
  }
  return encodeCommand('READY', Buffer.concat(parts));
}

/** ERROR with a reason (at most 255 bytes). */
export function encodeError(reason: string): Buffer {
  const r = Buffer.from(reason, 'latin1').subarray(0, 255);
  return encodeCommand('ERROR', Buffer.concat([Buffer.from([r.length]), r]));
}

export interface Greeting {
  major: number;
  minor: number;
  mechanism: string;
  asServer: boolean;
}

const hex = (b: number): string => `0x${b.toString(16).padStart(2, '0')}`;
const printable = (b: Buffer): string => JSON.stringify(b.toString('latin1'));

/**
 * Checks what has arrived of the peer's greeting so far (`bytes` holds its first
 * `bytes.length` ≤ 64 bytes): garbage is refused as soon as it shows, not after 64 bytes.
 * Returns the greeting once complete.
 */
export function checkGreeting(bytes: Buffer): Greeting | undefined {
  if (bytes.length >= 1 && bytes[0] !== 0xff)
    throw new ZmtpError(`bad greeting signature: first byte ${hex(bytes[0]!)}, not 0xff`);
  if (bytes.length >= 10 && bytes[9] !== 0x7f)
    throw new ZmtpError(`bad greeting signature: byte 9 is ${hex(bytes[9]!)}, not 0x7f`);
  if (bytes.length >= 11 && bytes[10]! < ZMTP_MAJOR)
    throw new ZmtpError(`the peer speaks ZMTP version ${bytes[10]}: 3.0 or later is needed`);
  if (bytes.length < GREETING_BYTES) return undefined;
  const raw = bytes.subarray(12, 12 + MECHANISM_BYTES);
  const end = raw.indexOf(0);
  const name = raw.subarray(0, end < 0 ? raw.length : end);
  if (name.toString('latin1') !== 'NULL' || (end >= 0 && raw.subarray(end).some((b) => b !== 0)))
    throw new ZmtpError(`the peer's mechanism is ${printable(name)}: only NULL is spoken`);
  return { major: bytes[10]!, minor: bytes[11]!, mechanism: 'NULL', asServer: bytes[32] === 1 };
}

export interface Command {
  name: string;
  data: Buffer;
}

/** Splits a command frame's body into name and data. */
export function parseCommand(body: Buffer): Command {
  const size = body[0];
  if (size === undefined || size === 0 || 1 + size > body.length)
    throw new ZmtpError(`a malformed command (name of ${size ?? 0} bytes in ${body.length})`);
  return { name: body.subarray(1, 1 + size).toString('latin1'), data: body.subarray(1 + size) };
}

/** READY's properties by lower-case name (ZMTP names are case-insensitive). */
export function parseReady(data: Buffer): Map<string, Buffer> {
  const props = new Map<string, Buffer>();
  let at = 0;
  while (at < data.length) {
    const nameSize = data[at]!;
    if (nameSize === 0 || at + 1 + nameSize + 4 > data.length)
      throw new ZmtpError(`READY: a truncated property at byte ${at} of ${data.length}`);
    const name = data.subarray(at + 1, at + 1 + nameSize).toString('latin1');
    const valueSize = data.readUInt32BE(at + 1 + nameSize);
    const start = at + 1 + nameSize + 4;
    if (start + valueSize > data.length)
      throw new ZmtpError(`READY: property ${name} of ${valueSize} bytes runs past the command`);
    props.set(name.toLowerCase(), data.subarray(start, start + valueSize));
    at = start + valueSize;
  }
  return props;
}

/** ERROR's reason, as the peer wrote it. */
export function parseErrorReason(data: Buffer): string {
  const size = data[0] ?? 0;
  return data.subarray(1, 1 + size).toString('latin1');
}

export type ZmtpEvent =
  /** The peer's greeting is complete and acceptable. */
  | { type: 'greeting'; greeting: Greeting }
  /** The peer's READY: the handshake is done, messages may flow both ways. */
  | { type: 'ready'; socketType: string; properties: Map<string, Buffer> }
  /** One whole message (its frames in order). */
  | { type: 'message'; frames: Buffer[] }
  /** A command after the handshake (PING in ZMTP 3.1); ERROR is thrown instead. */
  | { type: 'command'; name: string; data: Buffer };

/**
 * The peer's byte stream, in pieces of any size, to events: greeting, then READY (or an
 * ERROR, thrown), then messages. Every violation is a ZmtpError. Frames of a message
 * are handed out as views of the pushed chunks, which the caller must not reuse.
 */
export class ZmtpDecoder {
  private readonly chunks: Buffer[] = [];
  /** Read position in chunks[0]. */
  private offset = 0;
  private available = 0;
  private stage: 'greeting' | 'handshake' | 'traffic' = 'greeting';
  private frames: Buffer[] = [];

  /** `peerTypes`: the socket types we may talk to (RFC 28: a DEALER's are these three). */
  constructor(private readonly peerTypes: readonly string[] = ['DEALER', 'ROUTER', 'REP']) {}

  push(chunk: Buffer): ZmtpEvent[] {
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.available += chunk.length;
    }
    const events: ZmtpEvent[] = [];
    if (this.stage === 'greeting') {
      const greeting = checkGreeting(this.peek(Math.min(this.available, GREETING_BYTES)));
      if (!greeting) return events;
      this.take(GREETING_BYTES);
      this.stage = 'handshake';
      events.push({ type: 'greeting', greeting });
    }
    for (;;) {
      const next = this.nextFrame();
      if (!next) return events;
      const event = this.onFrame(next.flags, next.body);
      if (event) events.push(event);
    }
  }

  private onFrame(flags: number, body: Buffer): ZmtpEvent | undefined {
    if (flags & FLAG_COMMAND) {
      const { name, data } = parseCommand(body);
      if (name === 'ERROR')
        throw new ZmtpError(
          `the peer sent ERROR: ${printable(Buffer.from(parseErrorReason(data), 'latin1'))}`,
        );
      if (this.stage === 'traffic') return { type: 'command', name, data };
      if (name !== 'READY')
        throw new ZmtpError(`the peer sent ${printable(Buffer.from(name, 'latin1'))} before READY`);
      const properties = parseReady(data);
      const socketType = properties.get('socket-type')?.toString('latin1');
      if (socketType === undefined) throw new ZmtpError('READY without a Socket-Type');
      if (!this.peerTypes.includes(socketType))
        throw new ZmtpError(
          `the peer is a ${printable(Buffer.from(socketType, 'latin1'))} socket: a DEALER talks to ${this.peerTypes.join(', ')}`,
        );
      this.stage = 'traffic';
      return { type: 'ready', socketType, properties };
    }
    if (this.stage !== 'traffic') throw new ZmtpError('a message frame before READY');
    this.frames.push(body);
    if (flags & FLAG_MORE) return undefined;
    const frames = this.frames;
    this.frames = [];
    return { type: 'message', frames };
  }

  /** The next whole frame, or undefined until its bytes are all in. */
  private nextFrame(): { flags: number; body: Buffer } | undefined {
    if (this.available < 2) return undefined;
    const flags = this.byteAt(0);
    if (flags & FLAGS_RESERVED)
      throw new ZmtpError(`frame flags ${hex(flags)} have reserved bits set`);
    if (flags & FLAG_COMMAND && flags & FLAG_MORE)
      throw new ZmtpError('a command frame with MORE set');
    const long = (flags & FLAG_LONG) !== 0;
    const head = long ? 9 : 2;
    if (this.available < head) return undefined;
    let size: number;
    if (long) {
      const big = this.peek(9).readBigUInt64BE(1);
      if (big > BigInt(MAX_FRAME_BYTES))
        throw new ZmtpError(`a frame of ${big} bytes (at most ${MAX_FRAME_BYTES} are taken)`);
      size = Number(big);
    } else size = this.byteAt(1);
    if (this.available < head + size) return undefined;
    this.take(head);
    return { flags, body: this.take(size) };
  }

  private byteAt(i: number): number {
    let at = this.offset + i;
    for (const c of this.chunks) {
      if (at < c.length) return c[at]!;
      at -= c.length;
    }
    throw new PcrError('PCR_ERR_INTERNAL', `ZMTP decoder: byte ${i} of ${this.available}`);
  }

  /** The next `n` bytes without consuming them (n ≤ available). */
  private peek(n: number): Buffer {
    const first = this.chunks[0];
    if (n === 0 || first === undefined) return Buffer.alloc(0);
    if (first.length - this.offset >= n) return first.subarray(this.offset, this.offset + n);
    const out = Buffer.allocUnsafe(n);
    let got = 0;
    let at = this.offset;
    for (const c of this.chunks) {
      got += c.copy(out, got, at, Math.min(c.length, at + n - got));
      at = 0;
      if (got === n) break;
    }
    return out;
  }

  /** Consumes the next `n` bytes (n ≤ available): a view when they lie in one chunk. */
  private take(n: number): Buffer {
    const out = this.peek(n);
    this.available -= n;
    let at = this.offset + n;
    let drop = 0;
    while (drop < this.chunks.length && at >= this.chunks[drop]!.length) {
      at -= this.chunks[drop]!.length;
      drop++;
    }
    // One splice, not a shift per chunk: a long frame may come in many small pieces.
    if (drop > 0) this.chunks.splice(0, drop);
    this.offset = at;
    return out;
  }
}
