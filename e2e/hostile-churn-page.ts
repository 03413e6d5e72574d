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
  const c = { pcs: [], ws: null, peers: [], counts: { framesClosed: 0, framesRemade: 0, remakeRefused: 0, ordinaryClosed: 0, pcsClosed: 0, offersSent: 0 } };
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
        const to = JSON.parse(data.slice(2))[1].to;
        if (typeof to === 'string' && !c.peers.includes(to)) c.peers.push(to);
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
})();`;

export interface ChurnCounts {
  readonly framesClosed: number;
  readonly framesRemade: number;
  readonly remakeRefused: number;
  readonly ordinaryClosed: number;
  readonly pcsClosed: number;
  readonly offersSent: number;
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
    };
  }
}
