// The only module that imports simple-peer: WebRTC data channels between volunteers.
import SimplePeer from 'simple-peer/simplepeer.min.js';

export type SignalSender = (to: string, data: unknown) => void;
export type DataHandler = (from: string, bytes: Uint8Array) => void;

interface PeerEntry {
  readonly peer: SimplePeer.Instance;
  connected: Promise<void>;
  /** Messages sent before the data channel opened, in order; null once it has. */
  pending: Uint8Array[] | null;
}

const CONNECT_TIMEOUT_MS = 20_000;
/** Most messages held for a channel that is still opening (beyond it they are dropped, and reported). */
const MAX_PENDING = 4096;

/**
 * Data channels to the volunteers this one is linked with. Of each pair, the
 * volunteer with the smaller id starts the connection, so both sides agree
 * without asking. Signalling goes through the coordinator, which relays it
 * only between linked peers.
 */
export class PeerMesh {
  private readonly peers = new Map<string, PeerEntry>();

  constructor(
    private readonly myId: string,
    private readonly sendSignal: SignalSender,
    private readonly onData: DataHandler,
    private readonly onClose: (id: string) => void = () => {},
  ) {}

  /** Resolves when a data channel with `remote` is open (creating it when needed). */
  connect(remote: string): Promise<void> {
    return this.entry(remote, this.myId < remote).connected;
  }

  /** A signalling message relayed from `from`. */
  signal(from: string, data: unknown): void {
    this.entry(from, this.myId < from).peer.signal(data as SimplePeer.SignalData);
  }

  /**
   * Sends to a linked peer. A channel still opening (a replacement that has
   * just joined the route) holds the messages and sends them, in order, once
   * it opens: a replica may finish a step before its new neighbour's channel is
   * up, and that output must not be lost. False when they were dropped.
   */
  send(remote: string, messages: readonly Uint8Array[]): boolean {
    const e = this.peers.get(remote);
    if (e === undefined) return false; // not linked (connect() makes the entry when a session opens)
    if (e.pending === null) {
      if (!e.peer.connected) return false; // the channel closed
      for (const m of messages) e.peer.send(m);
      return true;
    }
    if (e.pending.length + messages.length > MAX_PENDING) return false;
    e.pending.push(...messages);
    return true;
  }

  close(): void {
    for (const e of this.peers.values()) e.peer.destroy();
    this.peers.clear();
  }

  private entry(remote: string, initiator: boolean): PeerEntry {
    const known = this.peers.get(remote);
    if (known !== undefined) return known;
    const peer = new SimplePeer({ initiator, trickle: true, config: { iceServers: [] } });
    const e: PeerEntry = { peer, connected: Promise.resolve(), pending: [] };
    const connected = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no data channel to ${remote} within ${CONNECT_TIMEOUT_MS} ms`)), CONNECT_TIMEOUT_MS);
      peer.once('connect', () => {
        clearTimeout(timer);
        // What was sent while the channel opened goes first, before anything sent from now on.
        const held = e.pending ?? [];
        e.pending = null;
        for (const m of held) peer.send(m);
        resolve();
      });
      peer.once('error', (err: Error) => {
        clearTimeout(timer);
        e.pending = null;
        reject(err);
      });
    });
    connected.catch(() => {}); // a failure is reported to whoever awaits connect()
    peer.on('signal', (data: unknown) => this.sendSignal(remote, data));
    peer.on('data', (chunk: Uint8Array) => {
      // simple-peer hands over views into a shared pool: copy before keeping.
      this.onData(remote, new Uint8Array(chunk));
    });
    const gone = () => {
      if (this.peers.get(remote)?.peer === peer) {
        this.peers.delete(remote);
        this.onClose(remote);
      }
    };
    peer.on('close', gone);
    peer.on('error', gone);
    e.connected = connected;
    this.peers.set(remote, e);
    return e;
  }
}
