// A TURN client that speaks the protocol itself (RFC 8489 STUN, RFC 8656
// TURN, RFC 6062 TCP relays), for tests that use a TURN server as a stranger
// holding a volunteer's credentials would: allocate a relay, ask for
// permission to reach an address, ask the server to open a TCP connection.
// Long-term credentials only (coturn's REST-API ones are that); no data is
// relayed. Each answer is returned as its response code: 200, or the
// server's error code (401, 403, 442, ...).
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { isIPv4, isIPv6, type Socket as TcpSocket, connect as tcpConnect } from 'node:net';

const MAGIC_COOKIE = 0x2112a442;
const HEADER_BYTES = 20;
const ANSWER_TIMEOUT_MS = 5_000;

/** Method codes. */
const ALLOCATE = 0x003;
const CREATE_PERMISSION = 0x008;
const REFRESH = 0x004;
const CONNECT = 0x00a;
/** A Send indication: method 0x006 in the indication class (0x0010). */
const SEND_INDICATION = 0x016;

/** Attribute types. */
const A = {
  username: 0x0006,
  lifetime: 0x000d,
  messageIntegrity: 0x0008,
  errorCode: 0x0009,
  realm: 0x0014,
  nonce: 0x0015,
  xorPeerAddress: 0x0012,
  data: 0x0013,
  requestedAddressFamily: 0x0017,
  requestedTransport: 0x0019,
} as const;

/** Transport numbers of REQUESTED-TRANSPORT. */
export const UDP = 17;
export const TCP = 6;

interface Attribute {
  readonly type: number;
  readonly value: Buffer;
}

interface Answer {
  /** 200 for a success response, else the error response's code. */
  readonly code: number;
  readonly reason: string;
  readonly attributes: readonly Attribute[];
}

function pad4(n: number): number {
  return (n + 3) & ~3;
}

function encodeAttribute(a: Attribute): Buffer {
  const out = Buffer.alloc(4 + pad4(a.value.length));
  out.writeUInt16BE(a.type, 0);
  out.writeUInt16BE(a.value.length, 2);
  a.value.copy(out, 4);
  return out;
}

/** A request (or an indication) of `type` with these attributes, and MESSAGE-INTEGRITY made with `key` when given. */
function encodeRequest(type: number, id: Buffer, attributes: readonly Attribute[], key: Buffer | null): Buffer {
  const body = Buffer.concat(attributes.map(encodeAttribute));
  const header = Buffer.alloc(HEADER_BYTES);
  header.writeUInt16BE(type, 0);
  header.writeUInt32BE(MAGIC_COOKIE, 4);
  id.copy(header, 8);
  if (key === null) {
    header.writeUInt16BE(body.length, 2);
    return Buffer.concat([header, body]);
  }
  // The HMAC covers the message up to the integrity attribute, with a length that already counts it (24 bytes).
  header.writeUInt16BE(body.length + 24, 2);
  const mac = createHmac('sha1', key)
    .update(Buffer.concat([header, body]))
    .digest();
  return Buffer.concat([header, body, encodeAttribute({ type: A.messageIntegrity, value: mac })]);
}

function decodeAnswer(b: Buffer): { id: Buffer; answer: Answer } {
  if (b.length < HEADER_BYTES || b.readUInt32BE(4) !== MAGIC_COOKIE) throw new Error('not a STUN message');
  const type = b.readUInt16BE(0);
  const length = b.readUInt16BE(2);
  if (HEADER_BYTES + length > b.length) throw new Error('a STUN message cut short');
  const attributes: Attribute[] = [];
  for (let at = HEADER_BYTES; at + 4 <= HEADER_BYTES + length; ) {
    const size = b.readUInt16BE(at + 2);
    attributes.push({ type: b.readUInt16BE(at), value: b.subarray(at + 4, at + 4 + size) });
    at += 4 + pad4(size);
  }
  // Class bits (0x0110): 0x0100 a success response, 0x0110 an error response.
  const klass = type & 0x0110;
  let code = 200;
  let reason = '';
  if (klass === 0x0110) {
    const e = attributes.find((a) => a.type === A.errorCode)?.value;
    code = e === undefined ? 0 : (e[2] ?? 0) * 100 + (e[3] ?? 0);
    reason = e === undefined ? '' : e.subarray(4).toString('utf8');
  } else if (klass !== 0x0100) throw new Error(`STUN message of class ${klass.toString(16)} where an answer was awaited`);
  return { id: b.subarray(8, HEADER_BYTES), answer: { code, reason, attributes } };
}

/** XOR-PEER-ADDRESS for an IPv4 or IPv6 address (RFC 8489 §14.2). */
function xorAddress(ip: string, port: number, id: Buffer): Buffer {
  const v4 = isIPv4(ip);
  if (!v4 && !isIPv6(ip)) throw new RangeError(`not an IP address: ${ip}`);
  const raw = v4 ? Buffer.from(ip.split('.').map(Number)) : ipv6Bytes(ip);
  const cookie = Buffer.alloc(4);
  cookie.writeUInt32BE(MAGIC_COOKIE);
  const mask = Buffer.concat([cookie, id]);
  const out = Buffer.alloc(4 + raw.length);
  out[1] = v4 ? 0x01 : 0x02;
  out.writeUInt16BE(port ^ (MAGIC_COOKIE >>> 16), 2);
  for (let i = 0; i < raw.length; i++) out[4 + i] = (raw[i] ?? 0) ^ (mask[i] ?? 0);
  return out;
}

function ipv6Bytes(ip: string): Buffer {
  // An embedded IPv4 tail (::ffff:10.0.0.1) as two groups.
  const tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(ip)?.[1];
  let text = ip;
  if (tail !== undefined) {
    const [a = 0, b = 0, c = 0, d = 0] = tail.split('.').map(Number);
    text = `${ip.slice(0, -tail.length)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', rest] = text.split('::');
  const groups = (s: string) => (s === '' ? [] : s.split(':'));
  const h = groups(head);
  const r = rest === undefined ? [] : groups(rest);
  const all = rest === undefined ? h : [...h, ...Array<string>(8 - h.length - r.length).fill('0'), ...r];
  const out = Buffer.alloc(16);
  all.forEach((g, i) => {
    out.writeUInt16BE(Number.parseInt(g, 16), 2 * i);
  });
  return out;
}

/** One connection to a TURN server (UDP or TCP) carrying requests and their answers, one at a time. */
class Channel {
  private readonly waiting = new Map<string, (a: Answer) => void>();
  private buffered = Buffer.alloc(0);

  private constructor(
    private readonly write: (b: Buffer) => void,
    readonly close: () => void,
  ) {}

  static async open(host: string, port: number, over: 'udp' | 'tcp'): Promise<Channel> {
    if (over === 'udp') {
      const s: UdpSocket = createSocket(isIPv6(host) ? 'udp6' : 'udp4');
      const c = new Channel(
        (b) => s.send(b, port, host),
        () => s.close(),
      );
      s.on('message', (m) => c.take(m));
      return c;
    }
    const s: TcpSocket = tcpConnect({ host, port });
    await new Promise<void>((resolve, reject) => {
      s.once('connect', resolve);
      s.once('error', reject);
    });
    const c = new Channel(
      (b) => s.write(b),
      () => s.destroy(),
    );
    // STUN over TCP: messages back to back, each as long as its header says.
    s.on('data', (d: Buffer) => {
      c.buffered = Buffer.concat([c.buffered, d]);
      while (c.buffered.length >= HEADER_BYTES) {
        const size = HEADER_BYTES + c.buffered.readUInt16BE(2);
        if (c.buffered.length < size) break;
        c.take(c.buffered.subarray(0, size));
        c.buffered = c.buffered.subarray(size);
      }
    });
    s.on('error', () => {});
    return c;
  }

  private take(m: Buffer): void {
    let decoded: { id: Buffer; answer: Answer };
    try {
      decoded = decodeAnswer(m);
    } catch {
      return; // not an answer to one of ours (data, an indication): not this client's concern
    }
    const key = decoded.id.toString('hex');
    this.waiting.get(key)?.(decoded.answer);
    this.waiting.delete(key);
  }

  /** Sends an indication: no answer comes. */
  indicate(type: number, attributes: (id: Buffer) => Attribute[]): void {
    const id = randomBytes(12);
    this.write(encodeRequest(type, id, attributes(id), null));
  }

  async request(method: number, attributes: (id: Buffer) => Attribute[], key: Buffer | null): Promise<Answer> {
    const id = randomBytes(12);
    const answer = new Promise<Answer>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id.toString('hex'));
        reject(new Error(`no answer to STUN method 0x${method.toString(16)} within ${ANSWER_TIMEOUT_MS} ms`));
      }, ANSWER_TIMEOUT_MS);
      this.waiting.set(id.toString('hex'), (a) => {
        clearTimeout(timer);
        resolve(a);
      });
    });
    this.write(encodeRequest(method, id, attributes(id), key));
    return answer;
  }
}

export interface TurnClientOptions {
  readonly host: string;
  readonly port: number;
  readonly username: string;
  readonly password: string;
  /** How this client reaches the server (a TCP relay needs TCP, RFC 6062). */
  readonly over: 'udp' | 'tcp';
}

export interface Allocation {
  /** 200, or the server's error code for the Allocate request. */
  readonly code: number;
  readonly reason: string;
  /** Permission to reach `ip` (any port) through the relay: 200, or the error code (403 for a forbidden peer). */
  permit(ip: string): Promise<number>;
  /** Refreshes the allocation for `lifetimeS` more seconds (0 ends it): 200, or the error code. */
  refresh(lifetimeS: number): Promise<number>;
  /** Asks the server to relay `data` from the allocation to `ip:port` (a Send indication; no answer comes). */
  send(ip: string, port: number, data: Buffer): void;
  /** On a TCP relay, asks the server to open a TCP connection to `ip:port` (RFC 6062 Connect): 200 once it did. */
  connect(ip: string, port: number): Promise<number>;
  close(): void;
}

/**
 * Allocates a relay of `transport` (UDP or TCP) for the given address
 * family, authenticating with long-term credentials (the server's 401 names
 * the realm and nonce; the request is sent again with them).
 */
export async function allocate(o: TurnClientOptions, transport: number, family: 4 | 6 = 4): Promise<Allocation> {
  for (let tries = 1; ; tries++) {
    const a = await allocateOnce(o, transport, family);
    // 437 Allocation Mismatch: the system gave this socket the port of an earlier one whose allocation the server
    // still holds (a test that closed its socket without ending it); RFC 8656 has the client try another port.
    if (a === 'mismatch') {
      if (tries >= MISMATCH_TRIES) throw new Error(`the server answered 437 Allocation Mismatch ${tries} times, each from a new port`);
      continue;
    }
    return a;
  }
}

/** Allocate tries from new ports after a 437 Allocation Mismatch. */
const MISMATCH_TRIES = 5;

async function allocateOnce(o: TurnClientOptions, transport: number, family: 4 | 6): Promise<Allocation | 'mismatch'> {
  const channel = await Channel.open(o.host, o.port, o.over);
  const value4 = (b: number) => Buffer.from([b, 0, 0, 0]);
  const base: Attribute[] = [{ type: A.requestedTransport, value: value4(transport) }];
  if (family === 6) base.push({ type: A.requestedAddressFamily, value: value4(0x02) });
  try {
    const first = await channel.request(ALLOCATE, () => base, null);
    if (first.code === 437) {
      channel.close();
      return 'mismatch';
    }
    const realm = first.attributes.find((a) => a.type === A.realm)?.value;
    const nonce = first.attributes.find((a) => a.type === A.nonce)?.value;
    if (first.code !== 401 || realm === undefined || nonce === undefined)
      throw new Error(`the server did not ask for credentials (answered ${first.code} ${first.reason})`);
    const key = createHash('md5')
      .update(`${o.username}:${realm.toString('utf8')}:${o.password}`)
      .digest();
    const signed = (extra: Attribute[]): Attribute[] => [
      ...extra,
      { type: A.username, value: Buffer.from(o.username, 'utf8') },
      { type: A.realm, value: realm },
      { type: A.nonce, value: nonce },
    ];
    const answer = await channel.request(ALLOCATE, () => signed(base), key);
    return {
      code: answer.code,
      reason: answer.reason,
      permit: async (ip) =>
        (await channel.request(CREATE_PERMISSION, (id) => signed([{ type: A.xorPeerAddress, value: xorAddress(ip, 0, id) }]), key)).code,
      connect: async (ip, port) =>
        (await channel.request(CONNECT, (id) => signed([{ type: A.xorPeerAddress, value: xorAddress(ip, port, id) }]), key)).code,
      refresh: async (lifetimeS) => {
        const value = Buffer.alloc(4);
        value.writeUInt32BE(lifetimeS);
        return (await channel.request(REFRESH, () => signed([{ type: A.lifetime, value }]), key)).code;
      },
      send: (ip, port, data) =>
        channel.indicate(SEND_INDICATION, (id) => [
          { type: A.xorPeerAddress, value: xorAddress(ip, port, id) },
          { type: A.data, value: data },
        ]),
      close: () => channel.close(),
    };
  } catch (e) {
    channel.close();
    throw e;
  }
}
