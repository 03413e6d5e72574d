// The hostile volunteer of e2e/hostile-churn.spec.ts: a real volunteer tab
// (main-thread data path, so its channels stay in the page) with this script
// added. It keeps a hand on every RTCPeerConnection its page makes and on each
// one's data channels, and on the page's Socket.IO WebSocket (learnt from the
// first `signal` event the page itself sends), whose `signal` events name the
// peers it is linked with. Then, bounded in count and time, it closes its
// `webswarm-frames` channels (and makes new negotiated ones with the same id),
// or simple-peer's channels, or destroys whole connections and sends fresh
// offers through the server's relay as fast as its own event budget allows.
// Plain JavaScript in a string: it runs in the page as it is.

/** Installs `window.__churn` in the page; call before the page's first RTCPeerConnection. */
export const CHURN_HOOKS = `(() => {
  if (window.__churn) return;
  const c = { pcs: [], ws: null, peers: [], holding: false, held: [], counts: { framesClosed: 0, framesRemade: 0, remakeRefused: 0, ordinaryClosed: 0, pcsClosed: 0, offersSent: 0, transceiverRequests: 0, answersHeld: 0 } };
  window.__churn = c;
  const Base = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends Base {
    constructor(...args) {
      super(...args);
      this.__channels = [];
      c.pcs = c.pcs.filter((pc) => pc.connectionState !== 'closed');
      c.pcs.push(this);
      this.addEventListener('datachannel', (ev) => this.__channels.push(ev.channel));
    }
    createDataChannel(...args) {
      const dc = super.createDataChannel(...args);
      this.__channels.push(dc);
      return dc;
    }
  };
  const wsSend = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    if (typeof data === 'string' && data.startsWith('42["signal"')) {
      c.ws = this;
      try {
        const m = JSON.parse(data.slice(2))[1];
        if (typeof m.to === 'string' && !c.peers.includes(m.to)) c.peers.push(m.to);
        // The page's own answers, held back while it asks for transceivers (see transceivers).
        if (c.holding && m.data && m.data.type === 'answer') {
          c.held.push(data);
          c.counts.answersHeld += 1;
          return;
        }
      } catch {}
    }
    return wsSend.call(this, data);
  };
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const live = () => c.pcs.filter((pc) => pc.connectionState === 'connected');
  const open = (pc, frames) => pc.__channels.filter((dc) => dc.readyState === 'open' && (dc.id === 1000) === frames);
  /** Closes every open frames channel (id 1000), then makes a new negotiated one with that id where the browser lets it. */
  c.closeFrames = async (rounds, gapMs) => {
    for (let i = 0; i < rounds; i++) {
      for (const pc of live()) {
        for (const dc of open(pc, true)) {
          dc.close();
          c.counts.framesClosed += 1;
        }
        await sleep(5);
        try {
          const dc = pc.createDataChannel('webswarm-frames', { negotiated: true, id: 1000 });
          dc.binaryType = 'arraybuffer';
          c.counts.framesRemade += 1;
        } catch {
          c.counts.remakeRefused += 1;
        }
      }
      await sleep(gapMs);
    }
  };
  /** Closes simple-peer's own channel (every open channel but the frames one) on each connection. */
  c.closeOrdinary = async (rounds, gapMs) => {
    for (let i = 0; i < rounds; i++) {
      for (const pc of live())
        for (const dc of open(pc, false)) {
          dc.close();
          c.counts.ordinaryClosed += 1;
        }
      await sleep(gapMs);
    }
  };
  /**
   * Destroys every connection, then for durationMs sends a fresh offer to
   * the linked peer named only (or to each in turn) through the server's relay (the
   * real signal event), ratePerS of them a second in all (the page's own
   * traffic goes on besides).
   */
  c.churn = async (durationMs, ratePerS, only) => {
    if (c.ws === null || c.peers.length === 0) throw new Error('the page has sent no signal yet');
    for (const pc of c.pcs)
      if (pc.connectionState !== 'closed') {
        pc.close();
        c.counts.pcsClosed += 1;
      }
    const offer = async () => {
      const pc = new Base();
      pc.createDataChannel('x');
      const o = await pc.createOffer();
      pc.close();
      return o.sdp;
    };
    let sdp = await offer();
    const until = performance.now() + durationMs;
    let k = 0;
    while (performance.now() < until && c.ws.readyState === WebSocket.OPEN) {
      const to = only ?? c.peers[k % c.peers.length];
      wsSend.call(c.ws, '42' + JSON.stringify(['signal', { to, data: { type: 'offer', sdp } }]));
      c.counts.offersSent += 1;
      k += 1;
      if (k % 20 === 0) sdp = await offer();
      await sleep(1000 / ratePerS);
    }
  };
  /**
   * Asks the linked peer named only for a video transceiver n times through the server's relay (the real signal
   * event, simple-peer's own shape), ratePerS a second, its page's answers held back meanwhile and only the latest
   * let go after: on a simple-peer initiator that took them, each added a transceiver to one pending offer, which
   * grew past what the server's socket takes (1 MiB), and the server closed that tab's connection.
   */
  c.transceivers = async (n, ratePerS, only) => {
    if (c.ws === null) throw new Error('the page has sent no signal yet');
    c.holding = true;
    try {
      for (let i = 0; i < n && c.ws.readyState === WebSocket.OPEN; i++) {
        wsSend.call(c.ws, '42' + JSON.stringify(['signal', { to: only, data: { type: 'transceiverRequest', transceiverRequest: { kind: 'video' } } }]));
        c.counts.transceiverRequests += 1;
        if (i % 10 === 9) await sleep(10000 / ratePerS);
      }
    } finally {
      c.holding = false;
      const last = c.held.splice(0).pop();
      if (last !== undefined && c.ws.readyState === WebSocket.OPEN) wsSend.call(c.ws, last);
    }
  };
})();`;

export interface ChurnCounts {
  readonly framesClosed: number;
  readonly framesRemade: number;
  readonly remakeRefused: number;
  readonly ordinaryClosed: number;
  readonly pcsClosed: number;
  readonly offersSent: number;
  readonly transceiverRequests: number;
  readonly answersHeld: number;
}

/** What CHURN_HOOKS installs, as the spec's page.evaluate calls see it. */
declare global {
  interface Window {
    __churn?: {
      readonly peers: string[];
      readonly counts: ChurnCounts;
      closeFrames(rounds: number, gapMs: number): Promise<void>;
      closeOrdinary(rounds: number, gapMs: number): Promise<void>;
      churn(durationMs: number, ratePerS: number, only?: string): Promise<void>;
      transceivers(n: number, ratePerS: number, only: string): Promise<void>;
    };
  }
}
