// PeerMesh's logic without WebRTC: the peer factory is injected, and FakePeer
// pairs two meshes' peers through a relay that stands in for the coordinator.
// (@roamhq/wrtc would give real data channels in Node, but it is not installed
// here; the e2e specs cover the real ones in Chromium.) Timers are faked, so
// lingering and timeouts are exact.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { IceConfig } from '../../shared/protocol/messages.js';
import { ERR_ICE_NO_CANDIDATES } from './ice-watch.js';
import { type ChannelHandoff, LOCAL_ICE_CONFIG, MAX_PEER_CANDIDATES, type PeerLike, PeerMesh, type SelectedPair } from './peers.js';

const LINGER_MS = 1_000;

type Handler = (...args: never[]) => void;

/** An offer or answer: its SDP names the fake peer that made it. */
interface Sdp {
  readonly type: 'offer' | 'answer';
  readonly sdp: string;
}

const sdp = (type: Sdp['type'], peer: number): Sdp => ({ type, sdp: `fake peer ${peer}` });
const peerOf = (d: Sdp): number => Number(d.sdp.slice('fake peer '.length));

/** A network of fake peers: an offer names its peer, the answer connects the two. */
class FakeNet {
  readonly peers: FakePeer[] = [];
  /** How long a side takes to notice that the other destroyed the connection (a dead network is noticed late). */
  remoteCloseMs = 0;
  /** Peers made from now on have a frames channel (a stand-in object: only its identity is handed over). */
  frames = false;
  /** What every peer says of its ICE (describeIce), as a browser's connection would. */
  ice = 'ICE (any candidate): candidates 1 host; gathering complete, connection checking';

  create(initiator: boolean, ice: IceConfig, owner: string): FakePeer {
    const p = new FakePeer(this, this.peers.length, initiator, ice, owner);
    this.peers.push(p);
    return p;
  }
}

class FakePeer implements PeerLike {
  connected = false;
  destroyed = false;
  /** Its data channel closed and the peer has not noticed yet: `connected` still, and send throws (as a browser's does). */
  closing = false;
  partner: FakePeer | null = null;
  /** Every signal given to it, as given. */
  readonly signals: unknown[] = [];
  private readonly handlers = new Map<string, Handler[]>();
  private readonly frames: RTCDataChannel | null;

  constructor(
    private readonly net: FakeNet,
    readonly id: number,
    readonly initiator: boolean,
    readonly ice: IceConfig,
    readonly owner: string,
  ) {
    if (initiator) queueMicrotask(() => this.emit('signal', sdp('offer', id)));
    this.frames = net.frames ? ({ label: `frames of peer ${id}` } as unknown as RTCDataChannel) : null;
  }

  channel(): RTCDataChannel | null {
    return this.frames;
  }

  on(event: string, listener: Handler): this {
    this.handlers.set(event, [...(this.handlers.get(event) ?? []), listener]);
    return this;
  }

  describeIce(): string {
    return this.net.ice;
  }

  async selectedPair(): Promise<SelectedPair | null> {
    return this.connected ? { local: 'relay', remote: 'relay', protocol: 'udp', relayProtocol: 'udp' } : null;
  }

  /** The connection fails (as simple-peer's does when ICE gives up): an error, then the close. */
  fail(err: Error): void {
    this.emit('error', err);
    this.destroy();
  }

  private emit(event: string, ...args: unknown[]): void {
    for (const h of this.handlers.get(event) ?? []) (h as (...a: unknown[]) => void)(...args);
  }

  signal(data: unknown): void {
    if (this.destroyed) return;
    this.signals.push(data);
    const d = data as Sdp;
    if (d.type !== 'offer' && d.type !== 'answer') return;
    const other = this.net.peers[peerOf(d)];
    if (other === undefined || other.destroyed) return;
    if (d.type === 'offer' && !this.initiator) {
      this.partner = other;
      queueMicrotask(() => this.emit('signal', sdp('answer', this.id)));
    } else if (d.type === 'answer' && this.initiator && other.partner === this) {
      this.partner = other;
      queueMicrotask(() => {
        if (this.destroyed || other.destroyed) return;
        this.connected = other.connected = true;
        this.emit('connect');
        other.emit('connect');
      });
    }
  }

  send(chunk: Uint8Array): void {
    if (!this.connected) throw new Error('send on a closed channel');
    if (this.closing) throw new Error("Failed to execute 'send' on 'RTCDataChannel': RTCDataChannel.readyState is not 'open'");
    const to = this.partner as FakePeer;
    queueMicrotask(() => to.emit('data', chunk));
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.connected = false;
    queueMicrotask(() => this.emit('close'));
    const p = this.partner;
    if (p === null || p.partner !== this) return;
    const noticed = () => {
      if (p.destroyed) return;
      p.destroyed = true;
      p.connected = false;
      p.emit('close');
    };
    if (this.net.remoteCloseMs === 0) queueMicrotask(noticed);
    else setTimeout(noticed, this.net.remoteCloseMs);
  }
}

async function flush(): Promise<void> {
  for (let i = 0; i < 50; i++) await Promise.resolve();
}

let net: FakeNet;
let meshes: Map<string, PeerMesh>;
let received: Map<string, string[]>;
let closed: string[];
/** The relay refuses everything (as the server does between peers no live session links). */
let unlinked = false;
/** What each mesh refused, as `id:CODE`. */
let refused: string[];

/** A volunteer's mesh; signals go to the named volunteer's mesh asynchronously, as through the coordinator. */
function mesh(id: string, ice?: IceConfig, handoff?: ChannelHandoff): PeerMesh {
  const m = new PeerMesh(
    id,
    (to, data) => queueMicrotask(() => (unlinked ? undefined : meshes.get(to)?.signal(id, data))),
    (from, bytes) => received.set(id, [...(received.get(id) ?? []), `${from}:${new TextDecoder().decode(bytes)}`]),
    {
      createPeer: ({ initiator, ice }) => net.create(initiator, ice, id),
      lingerMs: LINGER_MS,
      onClose: (remote) => closed.push(`${id}-${remote}`),
      rejected: (_from, reason) => refused.push(`${id}:${reason.split(' ', 1)[0]}`),
      ...(ice === undefined ? {} : { ice }),
      ...(handoff === undefined ? {} : { handoff }),
    },
  );
  meshes.set(id, m);
  return m;
}

const msg = (s: string) => new TextEncoder().encode(s);

beforeEach(() => {
  vi.useFakeTimers();
  net = new FakeNet();
  meshes = new Map();
  received = new Map();
  closed = [];
  refused = [];
  unlinked = false;
});

afterEach(() => {
  for (const m of meshes.values()) m.close();
  vi.useRealTimers();
});

/** Meshes a and b with their channel open: a offers, and `peer` is a's side of it. */
async function connectedPair(): Promise<{ a: PeerMesh; b: PeerMesh; peer: FakePeer }> {
  const a = mesh('a');
  const b = mesh('b');
  a.need(1, ['b']);
  b.need(1, ['a']);
  await Promise.all([a.connect('b'), b.connect('a')]);
  return { a, b, peer: net.peers[0] as FakePeer };
}

describe('PeerMesh', () => {
  it('hostile: a relayed signal that is not an object (null threw inside simple-peer in the receiving tab) is refused by name and opens nothing', async () => {
    const b = mesh('b');
    b.need(1, ['a']);
    for (const data of [null, 'offer', 7, [{ type: 'offer' }]]) expect(() => b.signal('a', data)).not.toThrow();
    await flush();
    expect(refused).toEqual(['b:ERR_BAD_SIGNAL', 'b:ERR_BAD_SIGNAL', 'b:ERR_BAD_SIGNAL', 'b:ERR_BAD_SIGNAL']);
    expect(net.peers).toHaveLength(0);
  });

  it("hostile: requests for media transceivers or renegotiation, and malformed offers and candidates, never reach the connection (each made simple-peer's initiator offer again)", async () => {
    const { a, peer } = await connectedPair();
    expect(peer.initiator).toBe(true);
    const given = peer.signals.length;
    refused.length = 0;
    const junk: unknown[] = [
      { type: 'transceiverRequest', transceiverRequest: { kind: 'video' } },
      { transceiverRequest: { kind: 'video' } },
      { type: 'renegotiate', renegotiate: true },
      { renegotiate: true },
      { type: 'offer' },
      { type: 'answer', sdp: 'x'.repeat(16 * 1024 + 1) },
      { type: 'answer', sdp: 7 },
      { type: 'candidate' },
      { type: 'candidate', candidate: { candidate: 'candidate:1 1 udp 1 127.0.0.1 9 typ host' } },
      { type: 'candidate', candidate: { candidate: 'c', sdpMLineIndex: -1 } },
      { type: 'candidate', candidate: { candidate: 'c', sdpMLineIndex: 0, sdpMid: 7 } },
      { type: 'candidate', candidate: { candidate: 'x'.repeat(1025), sdpMid: '0' } },
      { sdp: 'v=0', candidate: { candidate: 'c', sdpMid: '0' } },
    ];
    for (const data of junk) expect(() => a.signal('b', data)).not.toThrow();
    await flush();
    expect(refused).toEqual(junk.map(() => 'a:ERR_BAD_SIGNAL'));
    expect(peer.signals).toHaveLength(given);
    expect(peer.connected).toBe(true);
  });

  it('hostile: a candidate is passed on rebuilt (its other fields left behind), and no more than MAX_PEER_CANDIDATES of them for one connection', async () => {
    const { a, peer } = await connectedPair();
    const given = peer.signals.length;
    refused.length = 0;
    const line = 'candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host';
    a.signal('b', { type: 'candidate', candidate: { candidate: line, sdpMLineIndex: 0, sdpMid: '0', extra: 'x' }, more: 1 });
    expect(peer.signals.slice(given)).toEqual([{ type: 'candidate', candidate: { candidate: line, sdpMLineIndex: 0, sdpMid: '0' } }]);
    for (let i = 1; i < MAX_PEER_CANDIDATES + 50; i++)
      a.signal('b', { type: 'candidate', candidate: { candidate: line, sdpMLineIndex: null, sdpMid: '0' } });
    expect(peer.signals.length - given).toBe(MAX_PEER_CANDIDATES);
    expect(refused).toEqual(['a:ERR_BAD_SIGNAL']);
  });

  it('a signal the connection throws on fails that connection, by name, never the caller', async () => {
    const { a, peer } = await connectedPair();
    refused.length = 0;
    peer.signal = () => {
      throw new Error('cannot signal after peer is destroyed');
    };
    expect(() => a.signal('b', { type: 'answer', sdp: 'v=0' })).not.toThrow();
    expect(refused).toEqual(['a:ERR_BAD_SIGNAL']);
    expect(peer.destroyed).toBe(true);
  });

  it('opens one channel per pair, offered by the smaller id, and sends what was queued while it opened first, in order', async () => {
    const a = mesh('a');
    const b = mesh('b');
    a.need(1, ['b']);
    b.need(1, ['a']);
    const opened = Promise.all([a.connect('b'), b.connect('a')]);
    expect(a.send('b', [msg('1'), msg('2')])).toBe(true);
    await opened;
    expect(a.send('b', [msg('3')])).toBe(true);
    await flush();
    expect(received.get('b')).toEqual(['a:1', 'a:2', 'a:3']);
    expect(net.peers.map((p) => p.initiator)).toEqual([true, false]);
  });

  it('says a send failed, and throws nothing, when the channel closed under a peer that still says it is connected', async () => {
    const { a, peer } = await connectedPair();
    peer.closing = true;
    expect(peer.connected).toBe(true);
    expect(() => a.send('b', [msg('1')])).not.toThrow();
    expect(a.send('b', [msg('2')])).toBe(false);
    await flush();
    expect(received.get('b')).toBeUndefined();
  });

  it('closes a channel no live session needs, lingerMs after the last one ends, on both sides', async () => {
    const [a, b, c] = [mesh('a'), mesh('b'), mesh('c')];
    a.need(1, ['b', 'c']);
    a.need(2, ['b']);
    b.need(1, ['a']);
    b.need(2, ['a']);
    c.need(1, ['a']);
    await Promise.all([a.connect('b'), a.connect('c'), b.connect('a'), c.connect('a')]);
    for (const m of [a, b, c]) m.endSession(1);
    await vi.advanceTimersByTimeAsync(LINGER_MS - 1);
    expect(a.linked.sort()).toEqual(['b', 'c']);
    await vi.advanceTimersByTimeAsync(1);
    await flush();
    expect(a.linked).toEqual(['b']); // session 2 still needs b
    expect(c.linked).toEqual([]);
    expect(b.linked).toEqual(['a']);
    expect(a.send('c', [msg('late')])).toBe(false);
    // Session 2 ends too: nothing is left open.
    a.endSession(2);
    b.endSession(2);
    await vi.advanceTimersByTimeAsync(LINGER_MS);
    await flush();
    expect(a.linked).toEqual([]);
    expect(b.linked).toEqual([]);
    expect(net.peers.map((p) => p.destroyed)).toEqual(net.peers.map(() => true));
  });

  it('reuses the channel for a session that needs the same neighbour within the linger time', async () => {
    const [a, b] = [mesh('a'), mesh('b')];
    a.need(1, ['b']);
    b.need(1, ['a']);
    await Promise.all([a.connect('b'), b.connect('a')]);
    a.endSession(1);
    b.endSession(1);
    await vi.advanceTimersByTimeAsync(LINGER_MS / 2);
    a.need(2, ['b']);
    b.need(2, ['a']);
    await Promise.all([a.connect('b'), b.connect('a')]);
    await vi.advanceTimersByTimeAsync(LINGER_MS * 2);
    expect(a.linked).toEqual(['b']);
    expect(net.peers).toHaveLength(2);
  });

  it('a neighbour that opens a channel for a session this side never joins does not keep it', async () => {
    const [a, b] = [mesh('a'), mesh('b')];
    a.need(1, ['b']); // b never hears of session 1
    void a.connect('b').catch(() => {});
    await flush();
    expect(b.linked).toEqual(['a']);
    await vi.advanceTimersByTimeAsync(LINGER_MS - 1);
    expect(net.peers[1]?.destroyed).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(net.peers[1]?.destroyed).toBe(true); // b's side, which no session of b's needs
  });

  it('a neighbour that still needs a released channel opens it again when the other side comes back', async () => {
    const [a, b] = [mesh('a'), mesh('b')];
    a.need(1, ['b']);
    b.need(1, ['a']);
    await Promise.all([a.connect('b'), b.connect('a')]);
    expect(a.release('b')).toBe(true);
    await flush();
    expect(closed).toEqual(['b-a']); // b was not asked: told through onClose, and waits for a new offer
    expect(b.linked).toEqual(['a']);
    a.need(2, ['b']);
    await Promise.all([a.connect('b'), b.connect('a')]);
    b.send('a', [msg('again')]);
    await flush();
    expect(received.get('a')).toEqual(['b:again']);
    expect(net.peers).toHaveLength(4);
  });

  it('takes a second offer as the remote starting over, even before the old channel is seen to close', async () => {
    net.remoteCloseMs = 10_000;
    const [a, b] = [mesh('a'), mesh('b')];
    a.need(1, ['b']);
    b.need(1, ['a']);
    await Promise.all([a.connect('b'), b.connect('a')]);
    a.release('b');
    a.need(2, ['b']);
    await a.connect('b');
    a.send('b', [msg('fresh')]);
    b.send('a', [msg('back')]);
    await flush();
    expect(received.get('b')).toEqual(['a:fresh']);
    expect(received.get('a')).toEqual(['b:back']);
    await vi.advanceTimersByTimeAsync(10_000); // the old connection's close arrives late and changes nothing
    expect(b.linked).toEqual(['a']);
    expect(closed).toEqual([]);
  });

  it('close() ends every channel and fails the waits for channels still opening', async () => {
    const a = mesh('a');
    a.need(1, ['z']); // z never answers
    const waiting = a.connect('z');
    a.close();
    await expect(waiting).rejects.toThrow(/released/);
    expect(a.linked).toEqual([]);
  });

  it('gives up on a channel that does not open within the connect timeout', async () => {
    const a = mesh('a');
    a.need(1, ['z']);
    const waiting = a.connect('z');
    const caught = expect(waiting).rejects.toThrow(/no data channel to z within 20000 ms/);
    await vi.advanceTimersByTimeAsync(20_000);
    await caught;
  });
});

describe('PeerMesh and ICE', () => {
  const relay = (credential: string): IceConfig => ({
    iceServers: [{ urls: ['turn:127.0.0.1:3478'], username: '1700000000:a', credential }],
    iceTransportPolicy: 'relay',
  });

  it('makes each connection with the ICE configuration of the moment: a renewal applies to the connections made after', async () => {
    const a = mesh('a', relay('first'));
    const [b, c] = [mesh('b'), mesh('c')];
    a.need(1, ['b', 'c']);
    b.need(1, ['a']);
    c.need(1, ['a']);
    await Promise.all([a.connect('b'), b.connect('a')]);
    a.setIce(relay('renewed'));
    await Promise.all([a.connect('c'), c.connect('a')]);
    const of = (owner: string) => net.peers.filter((p) => p.owner === owner).map((p) => p.ice);
    expect(of('a')).toEqual([relay('first'), relay('renewed')]);
    expect(of('b')).toEqual([LOCAL_ICE_CONFIG]); // no configuration from the server yet: no STUN/TURN, any candidate
    expect(a.linked.sort()).toEqual(['b', 'c']); // the renewal closed nothing
  });

  it('names what ICE did when a channel does not open within the connect timeout', async () => {
    net.ice = 'ICE (relay only): no relay candidate from the TURN servers; TURN turn:127.0.0.1:3478 answered 401 Unauthorized';
    const a = mesh('a', relay('wrong'));
    a.need(1, ['z']); // z never answers
    const caught = expect(a.connect('z')).rejects.toThrow(/^no data channel to z within 20000 ms: ICE \(relay only\).*401 Unauthorized/);
    await vi.advanceTimersByTimeAsync(20_000);
    await caught;
  });

  it('passes on why a channel failed, after its reopens, with what ICE did', async () => {
    net.ice = 'ICE (relay only): no relay candidate from the TURN servers; gathering complete, connection new';
    const a = mesh('a', relay('wrong'));
    a.need(1, ['z']);
    const caught = expect(a.connect('z')).rejects.toThrow(
      /^the channel to z failed: Ice connection failed\.; ICE \(relay only\): no relay candidate from the TURN servers; gathering complete, connection new$/,
    );
    // The first connection and its three reopens all fail; the last one's error and ICE are told.
    for (let i = 0; i < 4; i++) {
      net.peers[i]?.fail(new Error(i < 3 ? net.ice : 'Ice connection failed.'));
      await flush();
    }
    expect(net.peers).toHaveLength(4);
    await caught;
  });

  it('does not repeat ICE in the error when the failure itself is what ICE said', async () => {
    net.ice = 'ICE (relay only): no relay candidate from the TURN servers; gathering complete, connection closed';
    const a = mesh('a', relay('wrong'));
    a.need(1, ['z']);
    const caught = expect(a.connect('z')).rejects.toThrow(
      /^the channel to z failed: ICE \(relay only\): no relay candidate from the TURN servers; gathering complete, connection new$/,
    );
    for (let i = 0; i < 4; i++) {
      net.peers[i]?.fail(new Error('ICE (relay only): no relay candidate from the TURN servers; gathering complete, connection new'));
      await flush();
    }
    await caught;
  });

  it('does not open again a connection that gathered no candidate, and names that failure when a later try times out', async () => {
    const noCandidate = 'ICE (relay only): no relay candidate from the TURN servers; TURN turn:127.0.0.1:3478 answered 401 Unauthorized';
    net.ice = 'ICE (relay only): no relay candidate from the TURN servers; gathering new, connection new';
    const a = mesh('a', relay('wrong'));
    a.need(1, ['z']);
    const first = expect(a.connect('z')).rejects.toThrow(`the channel to z failed: ${noCandidate}`);
    net.peers[0]?.fail(Object.assign(new Error(noCandidate), { code: ERR_ICE_NO_CANDIDATES }));
    await first;
    expect(net.peers).toHaveLength(1); // given up at once: the same servers would refuse again
    // The next try (the next session) waits for an answer that never comes: its timeout names the refusal before it.
    const second = expect(a.connect('z')).rejects.toThrow(
      `no data channel to z within 20000 ms: ${net.ice}; before that, the channel to z failed: ${noCandidate}`,
    );
    await vi.advanceTimersByTimeAsync(20_000);
    await second;
  });

  it('gives the selected candidate pair of each open channel, and none for one still opening', async () => {
    const [a, b] = [mesh('a'), mesh('b')];
    a.need(1, ['b', 'z']);
    b.need(1, ['a']);
    void a.connect('z').catch(() => {});
    await Promise.all([a.connect('b'), b.connect('a')]);
    expect(await a.iceStats()).toEqual([{ peer: 'b', pair: { local: 'relay', remote: 'relay', protocol: 'udp', relayProtocol: 'udp' } }]);
  });
});

/** A hand-off that records what it is given (the compute worker's side, web/volunteer/worker-path.ts, in the e2e specs). */
function recordingHandoff(accept: boolean) {
  const log = { taken: [] as string[], sent: [] as string[], dropped: [] as string[] };
  const handoff: ChannelHandoff = {
    take: (remote) => {
      log.taken.push(remote);
      return accept;
    },
    send: (remote, messages) => log.sent.push(...messages.map((m) => `${remote}:${new TextDecoder().decode(m)}`)),
    drop: (remote) => log.dropped.push(remote),
  };
  return { handoff, log };
}

/** a (with a hand-off that accepts or refuses) and b, linked for session 1. */
async function linkedPair(accept: boolean) {
  net.frames = true;
  const { handoff, log } = recordingHandoff(accept);
  const a = mesh('a', undefined, handoff);
  const b = mesh('b');
  a.need(1, ['b']);
  b.need(1, ['a']);
  await Promise.all([a.connect('b'), b.connect('a')]);
  return { a, log };
}

describe('PeerMesh hand-off of frames channels (the data path in the compute worker)', () => {
  it('hands the frames channel over in the task that made the connection; frames queued before it opened and sent after go there, in order', async () => {
    net.frames = true;
    const { handoff, log } = recordingHandoff(true);
    const a = mesh('a', undefined, handoff);
    const b = mesh('b');
    a.need(1, ['b']);
    b.need(1, ['a']);
    const opened = Promise.all([a.connect('b'), b.connect('a')]);
    // Synchronously: a channel can be transferred only in the task that created it.
    expect(log.taken).toEqual(['b']);
    expect(a.send('b', [msg('1'), msg('2')])).toBe(true);
    expect(log.sent).toEqual([]); // held until the connection is up
    await opened;
    expect(a.send('b', [msg('3')])).toBe(true);
    await flush();
    expect(log.sent).toEqual(['b:1', 'b:2', 'b:3']);
    expect(received.get('b')).toBeUndefined(); // nothing went on simple-peer's channel
  });

  it('keeps a channel the browser would not transfer: its frames go on the connection as before', async () => {
    const { a, log } = await linkedPair(false);
    a.send('b', [msg('x')]);
    await flush();
    expect(log.taken).toEqual(['b']);
    expect(log.sent).toEqual([]);
    expect(received.get('b')).toEqual(['a:x']);
  });

  it('a handed-off channel reported lost: the connection is dropped (the hand-off told) and opened again while a session needs it', async () => {
    const { a, log } = await linkedPair(true);
    a.lost('b');
    await flush();
    expect(log.dropped).toEqual(['b']);
    await a.connect('b');
    expect(log.taken).toEqual(['b', 'b']);
    a.send('b', [msg('after')]);
    await flush();
    expect(log.sent).toEqual(['b:after']);
    // A report for a peer with no handed-off connection changes nothing.
    a.lost('nobody');
    expect(log.dropped).toEqual(['b']);
  });

  it('a neighbour that keeps closing the connection: 4 connections at once, then one each 2 s (ERR_PEER_CHURN), and the channel comes back', async () => {
    const [a, b] = [mesh('a'), mesh('b')];
    a.need(1, ['b']);
    b.need(1, ['a']);
    await Promise.all([a.connect('b'), b.connect('a')]);
    // b's side closes each new connection as soon as it opens, 20 times in a row without a pause.
    for (let i = 0; i < 20; i++) {
      for (const p of net.peers) if (p.owner === 'b' && p.connected) p.destroy();
      await flush();
    }
    const made = (owner: string) => net.peers.filter((p) => p.owner === owner).length;
    expect([made('a'), made('b')]).toEqual([4, 4]);
    expect(refused.sort()).toEqual(['a:ERR_PEER_CHURN', 'b:ERR_PEER_CHURN']);
    expect(a.counts).toMatchObject({ linked: 0, opened: 4, deferred: 1 });
    a.send('b', [msg('held')]); // while the connection waits: held for it
    await vi.advanceTimersByTimeAsync(2_001);
    expect([made('a'), made('b')]).toEqual([5, 5]);
    await Promise.all([a.connect('b'), b.connect('a')]);
    await flush();
    expect(received.get('b')).toEqual(['a:held']);
    expect(a.counts).toMatchObject({ linked: 1, opened: 5, deferred: 0 });
  });

  it('offers flooding in from a neighbour: 4 connections made, the newest offer kept for the next (the older ones counted), then one each 2 s', async () => {
    const b = mesh('b');
    b.need(1, ['a']);
    // A stranger's initiator peers, whose offers b answers: one each time, as a hostile tab would send them.
    const offers = Array.from({ length: 100 }, () => net.create(true, LOCAL_ICE_CONFIG, 'a'));
    for (const o of offers) b.signal('a', sdp('offer', o.id));
    await flush();
    const made = () => net.peers.filter((p) => p.owner === 'b').length;
    expect(made()).toBe(4);
    // Each offer replaced the connection before it could answer: none answered yet.
    expect(b.counts).toMatchObject({ opened: 4, signalsSent: 0, deferred: 1 });
    // One refusal when the fifth waits, then one for each offer replaced by a newer one.
    expect(refused).toHaveLength(1 + 95);
    await vi.advanceTimersByTimeAsync(2_001);
    expect(made()).toBe(5);
    expect(b.counts).toMatchObject({ opened: 5, signalsSent: 1, deferred: 0 });
    // The connection made answers the newest offer.
    expect(net.peers.at(-1)?.partner).toBe(offers.at(-1));
    await vi.advanceTimersByTimeAsync(60_000);
    expect(made()).toBe(5);
  });

  it('an offer from the side that never starts the connection is refused (ERR_PEER_CHURN), not answered', async () => {
    const [a, b] = [mesh('a'), mesh('b')];
    a.need(1, ['b']);
    b.need(1, ['a']);
    await Promise.all([a.connect('b'), b.connect('a')]);
    const before = a.counts;
    const stranger = net.create(true, LOCAL_ICE_CONFIG, 'b');
    for (let i = 0; i < 50; i++) a.signal('b', sdp('offer', stranger.id));
    await flush();
    expect(a.counts).toEqual(before);
    expect(refused).toEqual(Array.from({ length: 50 }, () => 'a:ERR_PEER_CHURN'));
    a.send('b', [msg('still')]);
    await flush();
    expect(received.get('b')).toEqual(['a:still']);
  });

  it('an offer the relay refused (made after the session ended) is made again when the next session needs the peer', async () => {
    const [a, b] = [mesh('a'), mesh('b')];
    a.need(1, ['b']);
    b.need(1, ['a']);
    await Promise.all([a.connect('b'), b.connect('a')]);
    // The server has ended the session and unlinked the two; the tabs do not know yet, and the connection closes.
    unlinked = true;
    for (const p of net.peers) if (p.owner === 'b') p.destroy();
    await flush();
    a.endSession(1);
    b.endSession(1);
    expect(a.linked).toEqual(['b']); // a's offer went nowhere: opening, for ever
    unlinked = false;
    a.need(2, ['b']);
    b.need(2, ['a']);
    await Promise.all([a.connect('b'), b.connect('a')]); // within the fake clock's 0 ms: no connect timeout
    a.send('b', [msg('next')]);
    await flush();
    expect(received.get('b')).toEqual(['a:next']);
  });
});
