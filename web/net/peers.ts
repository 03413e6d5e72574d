// The only module that imports simple-peer: WebRTC data channels between volunteers.
import SimplePeer from 'simple-peer/simplepeer.min.js';

export type SignalSender = (to: string, data: unknown) => void;
export type DataHandler = (from: string, bytes: Uint8Array) => void;

interface PeerEntry {
  readonly peer: SimplePeer.Instance;
  readonly connected: Promise<void>;
}

const CONNECT_TIMEOUT_MS = 20_000;

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

  send(remote: string, messages: readonly Uint8Array[]): boolean {
    const e = this.peers.get(remote);
    if (e === undefined || !e.peer.connected) return false;
    for (const m of messages) e.peer.send(m);
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
    const connected = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no data channel to ${remote} within ${CONNECT_TIMEOUT_MS} ms`)), CONNECT_TIMEOUT_MS);
      peer.once('connect', () => {
        clearTimeout(timer);
        resolve();
      });
      peer.once('error', (e: Error) => {
        clearTimeout(timer);
        reject(e);
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
    const e = { peer, connected };
    this.peers.set(remote, e);
    return e;
  }
}
