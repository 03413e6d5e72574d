// The only module that imports simple-peer: WebRTC data channels between volunteers.
import SimplePeer from 'simple-peer/simplepeer.min.js';
import { notBinary } from '../../shared/protocol/frames.js';
import type { IceConfig } from '../../shared/protocol/messages.js';
import type { DelayLine } from '../../shared/swarm/delay-line.js';
import { ChurnGuard, type ChurnGuardOptions, ERR_PEER_CHURN, PEER_CHURN_LIMIT } from './churn-guard.js';
import { channelMessages, ERR_ICE_NO_CANDIDATES, IceWatch, type SelectedPair, selectedPair } from './ice-watch.js';

export type { SelectedPair } from './ice-watch.js';

export type SignalSender = (to: string, data: unknown) => void;
export type DataHandler = (from: string, bytes: Uint8Array) => void;

/** What PeerMesh uses of a simple-peer instance: tests inject a fake, so the mesh's logic runs without WebRTC. */
export interface PeerLike {
  readonly connected: boolean;
  signal(data: unknown): void;
  send(chunk: Uint8Array): void;
  destroy(): void;
  on(event: 'connect' | 'close', listener: () => void): unknown;
  on(event: 'signal', listener: (data: unknown) => void): unknown;
  on(event: 'data', listener: (chunk: Uint8Array) => void): unknown;
  on(event: 'error', listener: (err: Error) => void): unknown;
  /** What ICE gathered and what the STUN/TURN servers said, in words (named in connection errors). */
  describeIce?(): string;
  /** The candidate pair the open channel uses. */
  selectedPair?(): Promise<SelectedPair | null>;
  /** Data-channel messages sent and received on this connection so far (for the redundancy bench's counts). */
  channelMessages?(): Promise<{ sent: number; received: number }>;
  /**
   * A second, negotiated data channel on the same connection that both sides
   * make at once (FRAMES_CHANNEL_ID): what a side whose data path is in the
   * compute worker sends on, transferred there at its creation. Both sides
   * read both channels, so either path talks to either.
   */
  channel?(): RTCDataChannel | null;
}

/**
 * Where open data channels go (the data path in the compute worker): `take`
 * transfers a channel and says whether the browser let it go; frames for a
 * peer whose channel went are handed to `send`; `drop` says it is gone.
 */
export interface ChannelHandoff {
  take(remote: string, channel: RTCDataChannel): boolean;
  send(remote: string, messages: readonly Uint8Array[]): void;
  drop(remote: string): void;
}

export type PeerFactory = (opts: { readonly initiator: boolean; readonly ice: IceConfig }) => PeerLike;

/** The frames channel's stream id: high, clear of the ids the browser hands out to simple-peer's own channel (0 or 1). */
export const FRAMES_CHANNEL_ID = 1000;

/** No STUN or TURN, any candidate: enough on one host or a LAN (mDNS host candidates), until the server says otherwise. */
export const LOCAL_ICE_CONFIG: IceConfig = { iceServers: [], iceTransportPolicy: 'all' };

/**
 * Data channels over simple-peer, with the ICE servers and policy the server
 * handed out. A connection that gathered no candidate (every TURN server
 * refused, under a relay-only policy) is destroyed at once with the reason.
 */
export const simplePeerFactory: PeerFactory = ({ initiator, ice }) => {
  const peer = new SimplePeer({
    initiator,
    trickle: true,
    config: { iceServers: ice.iceServers.map((s) => ({ ...s, urls: [...s.urls] })), iceTransportPolicy: ice.iceTransportPolicy },
  });
  // simple-peer keeps its RTCPeerConnection in _pc (not in its typings); it is there from the constructor on.
  const pc = (peer as unknown as { _pc: RTCPeerConnection })._pc;
  // Negotiated: no in-band open, so both sides' objects exist from now on, each transferable in this task.
  const frames = pc.createDataChannel('webswarm-frames', { negotiated: true, id: FRAMES_CHANNEL_ID });
  frames.binaryType = 'arraybuffer';
  const watch = new IceWatch(pc, ice.iceTransportPolicy, (why) =>
    peer.destroy(Object.assign(new Error(why), { code: ERR_ICE_NO_CANDIDATES })),
  );
  return Object.assign(peer, {
    describeIce: () => watch.describe(),
    selectedPair: () => selectedPair(pc),
    channelMessages: () => channelMessages(pc),
    channel: () => frames,
  });
};

export interface PeerMeshOptions {
  /** A channel closed that nobody released (the remote went away, or its network did). */
  readonly onClose?: (id: string) => void;
  readonly createPeer?: PeerFactory;
  /** How long a channel no live session needs stays open, for the next session with the same neighbours (default 30 s). */
  readonly lingerMs?: number;
  /** ICE servers and policy for new connections (default LOCAL_ICE_CONFIG); setIce changes them. */
  readonly ice?: IceConfig;
  /** The bench's one-way delay on what this side sends (volunteer:net), shared with the tab's socket; none when absent. */
  readonly delay?: DelayLine;
  /** Open channels are handed to it (the data path in the compute worker); none: they stay here. */
  readonly handoff?: ChannelHandoff;
  /**
   * A message on a frames channel read here was refused before it reached
   * `onData` (a string), or a new connection to a peer waits (ERR_PEER_CHURN): for the counters.
   */
  readonly rejected?: (from: string, reason: string) => void;
  /** How often a new connection to one peer may be made (default PEER_CHURN_LIMIT). */
  readonly churn?: ChurnGuardOptions;
}

/** A new connection to a peer that waits for the churn guard: what is to go on it once it is made. */
interface Deferred {
  readonly timer: ReturnType<typeof setTimeout>;
  /** Messages sent to the peer meanwhile, in order (at most MAX_PENDING). */
  held: Uint8Array[];
  /** The remote's signalling since its latest offer (at most MAX_HELD_SIGNALS): fed to the connection once made. */
  signals: unknown[];
}

interface PeerEntry {
  readonly peer: PeerLike;
  readonly initiator: boolean;
  /** Messages sent before the data channel opened, in order; null once it has. */
  pending: Uint8Array[] | null;
  /** The non-initiator has been given an offer: a second one means the remote started over. */
  offered: boolean;
  /** Its frames channel was handed off at creation (ChannelHandoff). */
  handed: boolean;
  /** Open, and handed off: frames for it go there. */
  moved: boolean;
  /** ICE candidates the peer sent for this connection. */
  candidates: number;
}

interface Waiter {
  readonly resolve: () => void;
  readonly reject: (e: Error) => void;
  readonly timer: ReturnType<typeof setTimeout>;
}

const CONNECT_TIMEOUT_MS = 20_000;
/** Most messages held for a channel that is still opening (beyond it they are dropped, and reported). */
const MAX_PENDING = 4096;
const DEFAULT_LINGER_MS = 30_000;
/** Sessions whose neighbours are remembered (the coordinator closes each; this bounds a volunteer that missed closes). */
const MAX_SESSIONS = 64;
/** Times a needed channel that closed is opened again before its waiters are told. */
const MAX_REOPENS = 3;
/** Signalling messages held for a connection that waits (an offer and its candidates; more are dropped). */
const MAX_HELD_SIGNALS = 32;
/** Peers whose last failure is remembered (to name it when a later try times out). */
const MAX_FAILURES_KEPT = 64;

/**
 * Sends each message on a connected peer; false where its channel closed under it. simple-peer's `connected` is
 * still true for a moment after the remote end closes the channel, and its send then throws (a hostile neighbour
 * closing its channels again and again made that an uncaught error in an honest tab).
 */
function sendAll(peer: PeerLike, messages: readonly Uint8Array[]): boolean {
  try {
    for (const m of messages) peer.send(m);
    return true;
  } catch {
    return false;
  }
}

function isOffer(data: unknown): boolean {
  return typeof data === 'object' && data !== null && (data as { type?: unknown }).type === 'offer';
}

/** A neighbour's signal that is not what a data channel's connection sends (counted under this code). */
export const ERR_BAD_SIGNAL = 'ERR_BAD_SIGNAL';

/** What simple-peer signals for a data channel: an offer or an answer, or one ICE candidate. */
export type PeerSignal =
  | { readonly type: 'offer' | 'answer'; readonly sdp: string }
  | {
      readonly type: 'candidate';
      readonly candidate: { readonly candidate: string; readonly sdpMLineIndex: number | null; readonly sdpMid: string | null };
    };

/** An offer's or answer's SDP at most: a data channel's is about 1 KB, and the server relays 16 KiB of signal at most. */
const MAX_SDP_CHARS = 16 * 1024;
/** An ICE candidate's line at most (a browser's are about 100 characters). */
const MAX_CANDIDATE_CHARS = 1024;
/** ICE candidates one connection takes from its peer: a browser gathers a few for each interface and ICE server. */
export const MAX_PEER_CANDIDATES = 100;

/**
 * A neighbour's relayed signal as simple-peer's data channels send it, rebuilt field by field, or why it is not one.
 * Its requests to renegotiate or for a media transceiver are never a data channel's: before, each request made the
 * connection's initiator add a video transceiver and offer again (simple-peer does so unasked), and about 950 of them
 * an offer of 3.9 MB, for which the server closed the honest tab's socket (a red-team find). A candidate that names
 * neither its line nor its media id threw out of the socket's handler (RTCIceCandidate's constructor).
 */
export function peerSignal(data: unknown): PeerSignal | string {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return 'a signal that is not an object';
  const d = data as Record<string, unknown>;
  if (d.type === 'offer' || d.type === 'answer') {
    if (typeof d.sdp !== 'string' || d.sdp.length === 0 || d.sdp.length > MAX_SDP_CHARS)
      return `an ${d.type} whose sdp is not a string of 1 to ${MAX_SDP_CHARS} characters`;
    return { type: d.type, sdp: d.sdp };
  }
  if (d.type === 'candidate') {
    const c = d.candidate;
    if (typeof c !== 'object' || c === null || Array.isArray(c)) return 'a candidate signal without a candidate';
    const { candidate, sdpMLineIndex, sdpMid } = c as Record<string, unknown>;
    if (typeof candidate !== 'string' || candidate.length > MAX_CANDIDATE_CHARS)
      return `a candidate that is not a string of at most ${MAX_CANDIDATE_CHARS} characters`;
    const line = typeof sdpMLineIndex === 'number' && Number.isInteger(sdpMLineIndex) && sdpMLineIndex >= 0 && sdpMLineIndex < 65_536;
    const mid = typeof sdpMid === 'string' && sdpMid.length <= 256;
    if ((!line && sdpMLineIndex != null) || (!mid && sdpMid != null) || (!line && !mid))
      return 'a candidate without a valid sdpMLineIndex or sdpMid';
    return { type: 'candidate', candidate: { candidate, sdpMLineIndex: line ? sdpMLineIndex : null, sdpMid: mid ? sdpMid : null } };
  }
  const kind = typeof d.type === 'string' ? `of type ${JSON.stringify(d.type.slice(0, 40))}` : 'without a type';
  return `a signal ${kind}: a data channel's are offers, answers and candidates`;
}

/**
 * Data channels to the volunteers this one is linked with. Of each pair, the
 * volunteer with the smaller id starts the connection, so both sides agree
 * without asking. Signalling goes through the coordinator, which relays it
 * only between linked peers. A channel is kept while a live session names the
 * peer as a neighbour (`need`), and closed `lingerMs` after the last one ends
 * (`endSession`), so a volunteer does not hold a channel to everyone it ever
 * worked with.
 */
export class PeerMesh {
  private readonly peers = new Map<string, PeerEntry>();
  private readonly waiters = new Map<string, Waiter[]>();
  /** Each live session's neighbours. */
  private readonly needs = new Map<number, ReadonlySet<string>>();
  private readonly lingering = new Map<string, ReturnType<typeof setTimeout>>();
  private readonly reopens = new Map<string, number>();
  /** Why the last connection to each peer failed: a later try that times out names it. */
  private readonly failures = new Map<string, string>();
  private readonly onClose: (id: string) => void;
  private readonly createPeer: PeerFactory;
  private readonly lingerMs: number;
  private ice: IceConfig;
  private readonly delay: DelayLine | null;
  private readonly handoff: ChannelHandoff | null;
  private readonly rejected: (from: string, reason: string) => void;
  private closed = false;
  /** Connections made and signalling messages sent so far, over this mesh's life (read-only counters for tests). */
  private opened = 0;
  private signalsSent = 0;
  private readonly churn: ChurnGuard;
  /** New connections that wait for the churn guard, by peer. */
  private readonly deferred = new Map<string, Deferred>();

  constructor(
    private readonly myId: string,
    private readonly sendSignal: SignalSender,
    private readonly onData: DataHandler,
    options: PeerMeshOptions = {},
  ) {
    this.onClose = options.onClose ?? (() => {});
    this.createPeer = options.createPeer ?? simplePeerFactory;
    this.lingerMs = options.lingerMs ?? DEFAULT_LINGER_MS;
    this.ice = options.ice ?? LOCAL_ICE_CONFIG;
    this.delay = options.delay ?? null;
    this.handoff = options.handoff ?? null;
    this.rejected = options.rejected ?? (() => {});
    this.churn = new ChurnGuard(options.churn ?? PEER_CHURN_LIMIT);
  }

  /** ICE servers and policy for the connections made from now on (open ones keep theirs). */
  setIce(ice: IceConfig): void {
    this.ice = ice;
  }

  /** Each open channel's selected candidate pair (null where the browser does not say). */
  async iceStats(): Promise<{ peer: string; pair: SelectedPair | null }[]> {
    const open = [...this.peers].filter(([, e]) => e.pending === null && (e.moved || e.peer.connected));
    return Promise.all(open.map(async ([peer, e]) => ({ peer, pair: (await e.peer.selectedPair?.()) ?? null })));
  }

  /** Data-channel messages sent and received over every open connection (zero where the browser does not say). */
  async channelMessages(): Promise<{ sent: number; received: number }> {
    const open = [...this.peers.values()].filter((e) => e.pending === null && (e.moved || e.peer.connected));
    const counts = await Promise.all(open.map(async (e) => (await e.peer.channelMessages?.()) ?? { sent: 0, received: 0 }));
    return counts.reduce((a, c) => ({ sent: a.sent + c.sent, received: a.received + c.received }), { sent: 0, received: 0 });
  }

  /** Resolves when a data channel with `remote` is open (creating it when needed). */
  connect(remote: string): Promise<void> {
    const e = this.open(remote);
    if (e !== null && e.pending === null && (e.moved || e.peer.connected)) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.set(
          remote,
          (this.waiters.get(remote) ?? []).filter((w) => w.timer !== timer),
        );
        const ice = this.peers.get(remote)?.peer.describeIce?.();
        const last = this.failures.get(remote);
        const why = [ice, last === undefined ? undefined : `before that, ${last}`].filter((w) => w !== undefined);
        reject(new Error(`no data channel to ${remote} within ${CONNECT_TIMEOUT_MS} ms${why.length === 0 ? '' : `: ${why.join('; ')}`}`));
      }, CONNECT_TIMEOUT_MS);
      const list = this.waiters.get(remote) ?? [];
      list.push({ resolve, reject, timer });
      this.waiters.set(remote, list);
    });
  }

  /** A signalling message relayed from `from`. */
  signal(from: string, raw: unknown): void {
    if (this.closed) return;
    // Only what simple-peer signals for a data channel reaches it, rebuilt (it reads fields of whatever it is given:
    // null threw in this tab, and requests for media transceivers made it offer again and again: see peerSignal).
    const data = peerSignal(raw);
    if (typeof data === 'string') {
      this.rejected(from, `${ERR_BAD_SIGNAL} ${data}, from ${from}`);
      return;
    }
    // Of each pair the smaller id offers (simple-peer's other side asks the initiator to renegotiate, never offers):
    // an offer from the other side is a stranger's, and answering it would spend this tab's signalling for it.
    if (isOffer(data) && this.myId < from) {
      this.rejected(from, `${ERR_PEER_CHURN} an offer from ${from}, which never starts a connection to this side`);
      return;
    }
    let e = this.peers.get(from) ?? null;
    // A second offer: the remote closed its side and started over; this side's old connection is dead.
    if (e !== null && isOffer(data) && !e.initiator && e.offered) {
      this.drop(from, e);
      e = null;
    }
    e ??= this.open(from);
    if (e === null) {
      // The new connection waits (the remote asked for too many too fast): its latest offer is kept for then.
      const d = this.deferred.get(from);
      if (d !== undefined) this.hold(from, d, data);
      return;
    }
    if (isOffer(data) && !e.initiator) e.offered = true;
    if (data.type === 'candidate' && ++e.candidates > MAX_PEER_CANDIDATES) {
      if (e.candidates === MAX_PEER_CANDIDATES + 1)
        this.rejected(from, `${ERR_BAD_SIGNAL} more than ${MAX_PEER_CANDIDATES} ICE candidates from ${from} for one connection`);
      return;
    }
    try {
      e.peer.signal(data);
    } catch (err) {
      // What the browser refuses of a well-formed signal fails this connection, never the socket's handler.
      this.rejected(from, `${ERR_BAD_SIGNAL} a signal from ${from} the connection refused: ${(err as Error).message}`);
      this.drop(from, e);
      return;
    }
    // A channel a neighbour opens before this side's session:open arrives must not stay forever if none does.
    if (!this.needed(from)) this.linger(from);
  }

  /**
   * Sends to a linked peer. A channel still opening (a replacement that has
   * just joined the route) holds the messages and sends them, in order, once
   * it opens: a replica may finish a step before its new neighbour's channel is
   * up, and that output must not be lost. False when they were dropped.
   */
  send(remote: string, messages: readonly Uint8Array[]): boolean {
    const delay = this.delay;
    if (delay === null || (delay.delayMs === 0 && delay.pending === 0)) return this.sendNow(remote, messages);
    // Delayed (the bench's WAN): whether the channel takes them is known only then.
    return delay.run(() => void this.sendNow(remote, messages));
  }

  private sendNow(remote: string, messages: readonly Uint8Array[]): boolean {
    const e = this.peers.get(remote);
    const d = this.deferred.get(remote);
    if (e === undefined && d !== undefined) {
      // The connection waits for the churn guard: held for it as for one that is opening.
      if (d.held.length + messages.length > MAX_PENDING) return false;
      d.held.push(...messages);
      return true;
    }
    if (e === undefined) return false; // not linked (connect() makes the entry when a session opens)
    if (e.moved) {
      this.handoff?.send(remote, messages);
      return true;
    }
    if (e.pending === null) return e.peer.connected && sendAll(e.peer, messages); // false: the channel closed
    if (e.pending.length + messages.length > MAX_PENDING) return false;
    e.pending.push(...messages);
    return true;
  }

  /** A session's neighbours now (at session:open and at each session:update). */
  need(sessionId: number, peers: readonly string[]): void {
    const before = this.needs.get(sessionId);
    const fresh = peers.filter((p) => !this.needed(p));
    this.needs.delete(sessionId); // re-inserted last: the map's order is the order of use
    this.needs.set(sessionId, new Set(peers));
    if (this.needs.size > MAX_SESSIONS) this.endSession(this.needs.keys().next().value as number);
    for (const p of peers) this.keep(p);
    for (const p of fresh) this.restartStale(p);
    for (const p of before ?? []) if (!this.needed(p)) this.linger(p);
  }

  /**
   * A connection this side offered that is still opening when a session comes
   * to need the peer again: the offer went out while no session linked the two
   * (a reopen after the last one ended), the server refused to relay it
   * (ERR_NOT_LINKED), and no answer will come. Started over now that the
   * server relays again; otherwise the session would wait CONNECT_TIMEOUT_MS
   * for it, and not join.
   */
  private restartStale(remote: string): void {
    const e = this.peers.get(remote);
    if (e === undefined || !e.initiator || e.pending === null) return;
    this.drop(remote, e);
    this.open(remote, e.pending);
  }

  /** The session ended: channels no other live session needs close after `lingerMs`. */
  endSession(sessionId: number): void {
    const peers = this.needs.get(sessionId);
    if (peers === undefined) return;
    this.needs.delete(sessionId);
    for (const p of peers) if (!this.needed(p)) this.linger(p);
  }

  /** Closes the channel to `remote` now; false when there was none. */
  release(remote: string): boolean {
    const e = this.peers.get(remote);
    this.keep(remote);
    this.reopens.delete(remote);
    const d = this.deferred.get(remote);
    if (d !== undefined) clearTimeout(d.timer);
    this.deferred.delete(remote);
    if (e === undefined) return false;
    this.drop(remote, e);
    this.settle(remote, new Error(`the channel to ${remote} was released`));
    return true;
  }

  /** The handed-off channel to `remote` closed (where it went, this side does not see it): the connection goes, and is opened again if needed. */
  lost(remote: string): void {
    const e = this.peers.get(remote);
    if (e?.handed === true) e.peer.destroy();
  }

  /** Peers with a connection (open or opening), connections made and signalling messages sent so far. */
  get counts(): { linked: number; opened: number; signalsSent: number; deferred: number } {
    return { linked: this.peers.size, opened: this.opened, signalsSent: this.signalsSent, deferred: this.deferred.size };
  }

  /** Peers with a channel, open or opening. */
  get linked(): string[] {
    return [...this.peers.keys()];
  }

  close(): void {
    this.closed = true;
    for (const id of [...this.peers.keys(), ...this.deferred.keys()]) this.release(id);
    this.needs.clear();
  }

  private needed(remote: string): boolean {
    for (const peers of this.needs.values()) if (peers.has(remote)) return true;
    return false;
  }

  private keep(remote: string): void {
    const t = this.lingering.get(remote);
    if (t === undefined) return;
    clearTimeout(t);
    this.lingering.delete(remote);
  }

  private linger(remote: string): void {
    if (this.lingering.has(remote) || !this.peers.has(remote)) return;
    const t = setTimeout(() => {
      this.lingering.delete(remote);
      if (!this.needed(remote)) this.release(remote);
    }, this.lingerMs);
    this.lingering.set(remote, t);
  }

  private remember(remote: string, why: string): void {
    this.failures.delete(remote); // re-inserted last: the oldest goes first
    this.failures.set(remote, why);
    if (this.failures.size > MAX_FAILURES_KEPT) this.failures.delete(this.failures.keys().next().value as string);
  }

  /** Forgets an entry and destroys its peer; its 'close' then finds it gone and does nothing. */
  private drop(remote: string, e: PeerEntry): void {
    if (this.peers.get(remote) === e) this.peers.delete(remote);
    if (e.handed) this.handoff?.drop(remote);
    e.peer.destroy();
  }

  /** Resolves (no error) or rejects everyone waiting in connect(remote). */
  private settle(remote: string, error: Error | null): void {
    const list = this.waiters.get(remote);
    if (list === undefined) return;
    this.waiters.delete(remote);
    for (const w of list) {
      clearTimeout(w.timer);
      if (error === null) w.resolve();
      else w.reject(error);
    }
  }

  /**
   * The connection to `remote`: the one there is, or a new one if the churn
   * guard allows; otherwise null, and a new one is made once it does (if a
   * session needs the peer, someone waits for it, or it offered one).
   */
  private open(remote: string, held: Uint8Array[] = []): PeerEntry | null {
    const known = this.peers.get(remote);
    if (known !== undefined) return known;
    if (!this.deferred.has(remote) && this.churn.take(remote)) return this.entry(remote, held);
    if (this.deferred.has(remote)) return null;
    const waitMs = this.churn.waitMs(remote) + 1;
    this.rejected(remote, `${ERR_PEER_CHURN} a new connection to ${remote} waits ${waitMs} ms: it closed or offered too many too fast`);
    this.deferred.set(remote, { timer: setTimeout(() => this.retry(remote), waitMs), held, signals: [] });
    return null;
  }

  private retry(remote: string): void {
    const d = this.deferred.get(remote);
    if (d === undefined) return;
    this.deferred.delete(remote);
    if (this.closed || !(this.needed(remote) || this.waiters.has(remote) || d.signals.length > 0)) return;
    if (this.open(remote, d.held) === null) return; // waits again
    for (const data of d.signals) this.signal(remote, data);
  }

  /** The remote's signalling while its connection waits: a new offer starts over (the older one is refused, and counted). */
  private hold(remote: string, d: Deferred, data: unknown): void {
    if (isOffer(data)) {
      if (d.signals.length > 0)
        this.rejected(remote, `${ERR_PEER_CHURN} an offer from ${remote} replaced by a newer one while its connection waits`);
      d.signals = [data];
    } else if (d.signals.length < MAX_HELD_SIGNALS) d.signals.push(data);
  }

  private entry(remote: string, held: Uint8Array[]): PeerEntry {
    const initiator = this.myId < remote;
    const peer = this.createPeer({ initiator, ice: this.ice });
    this.opened += 1;
    const e: PeerEntry = { peer, initiator, pending: held, offered: false, handed: false, moved: false, candidates: 0 };
    this.peers.set(remote, e);
    const current = () => this.peers.get(remote) === e;
    // The frames channel can be transferred only in the task that created it: now, or never.
    const frames = peer.channel?.() ?? null;
    if (frames !== null) {
      e.handed = this.handoff?.take(remote, frames) ?? false;
      if (!e.handed)
        frames.onmessage = (ev: MessageEvent<unknown>) => {
          if (!current()) return;
          if (ev.data instanceof ArrayBuffer) this.onData(remote, new Uint8Array(ev.data));
          else this.rejected(remote, notBinary(ev.data));
        };
    }
    peer.on('connect', () => {
      if (!current()) return;
      // What was sent while the channel opened goes first, before anything sent from now on.
      const queued = e.pending ?? [];
      e.pending = null;
      e.moved = e.handed;
      if (e.moved) this.handoff?.send(remote, queued);
      else sendAll(peer, queued);
      this.reopens.delete(remote);
      this.failures.delete(remote);
      this.settle(remote, null);
    });
    peer.on('signal', (data: unknown) => {
      if (!current()) return;
      this.signalsSent += 1;
      this.sendSignal(remote, data);
    });
    peer.on('data', (chunk: Uint8Array) => {
      // simple-peer hands over views into a shared pool: copy before keeping.
      if (current()) this.onData(remote, new Uint8Array(chunk));
    });
    const gone = (err?: Error) => {
      if (!current()) return; // released, or replaced by a newer connection
      this.peers.delete(remote);
      if (e.handed) this.handoff?.drop(remote);
      this.keep(remote);
      this.onClose(remote);
      // Name what ICE did (unless the error already does): a channel that never opened is most often a STUN/TURN problem.
      const closed = err === undefined ? `the channel to ${remote} closed` : `the channel to ${remote} failed: ${err.message}`;
      const ice = peer.describeIce?.();
      const why = ice === undefined || /\bICE\b/.test(closed) ? closed : `${closed}; ${ice}`;
      if (err !== undefined) this.remember(remote, why);
      // A neighbour a live session still needs: open again (the initiator offers, the other side waits),
      // keeping what was queued for it; the remote does the same on its side. Not when no candidate
      // could be gathered: the same servers would refuse again.
      const futile = (err as { code?: unknown } | undefined)?.code === ERR_ICE_NO_CANDIDATES;
      const tries = this.reopens.get(remote) ?? 0;
      if (!this.closed && !futile && this.needed(remote) && tries < MAX_REOPENS) {
        this.reopens.set(remote, tries + 1);
        this.open(remote, e.pending ?? []);
        return;
      }
      this.reopens.delete(remote);
      this.settle(remote, new Error(why));
    };
    peer.on('close', () => gone());
    peer.on('error', (err: Error) => gone(err));
    return e;
  }
}
