// The hostile volunteer of e2e/hostile-frames.spec.ts: a real volunteer tab
// (it joins, loads its stage, computes and sends its honest frames as any
// other) with this script added. It keeps a hand on every data channel its
// page makes (the ordinary one simple-peer opens and `webswarm-frames`, id
// 1000), learns from its own outgoing frames which connection leads to a
// replica it feeds (and the session, step, era and its replica index there),
// and from incoming token frames which one leads to the last stage; then it
// sends raw bytes of its choosing on both channels. Plain JavaScript in a
// string: it runs in the page as it is, not compiled by the test's bundler.

/** Installs `window.__hostile` in the page; call before the page's first RTCPeerConnection. */
export const HOSTILE_HOOKS = `(() => {
  if (window.__hostile) return;
  const MAGIC = 0x46575357;
  const h = { links: [], sentSome: 0 };
  window.__hostile = h;
  const linkOf = new WeakMap();
  const header = (data) => {
    const view = data instanceof ArrayBuffer ? new DataView(data) : ArrayBuffer.isView(data) ? new DataView(data.buffer, data.byteOffset, data.byteLength) : null;
    if (view === null || view.byteLength < 32 || view.getUint32(0, true) !== MAGIC) return null;
    return { era: view.getUint8(7), sessionId: view.getUint32(8, true), step: view.getUint32(12, true), stage: view.getUint16(16, true), replica: view.getUint16(18, true) };
  };
  const record = (link, dc) => {
    if (link.channels.includes(dc)) return;
    link.channels.push(dc);
    linkOf.set(dc, link);
    dc.addEventListener('message', (ev) => {
      const f = header(ev.data);
      if (f !== null) link.received.add(f.stage);
    });
  };
  const Base = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends Base {
    constructor(...args) {
      super(...args);
      const link = { pc: this, channels: [], received: new Set(), sent: null };
      h.links.push(link);
      this.__link = link;
      this.addEventListener('datachannel', (ev) => record(link, ev.channel));
    }
    createDataChannel(...args) {
      const dc = super.createDataChannel(...args);
      record(this.__link, dc);
      return dc;
    }
  };
  const send = RTCDataChannel.prototype.send;
  RTCDataChannel.prototype.send = function (data) {
    const link = linkOf.get(this);
    const f = header(data);
    if (link !== undefined && f !== null) {
      link.sent = { ...f, at: performance.now() };
      h.sentSome += 1;
    }
    return send.call(this, data);
  };
  const open = (l) => l.channels.filter((c) => c.readyState === 'open');
  const live = () => h.links.filter((l) => open(l).length > 0);
  /** Links this tab sent frames of its own stage on (the replicas it feeds, or stage 0 its tokens), with the latest frame sent. */
  h.to = (stage) => live().filter((l) => l.sent !== null && l.sent.stage === stage);
  /** Links that sent this tab frames of that stage and that it sends nothing to. */
  h.from = (stage) => live().filter((l) => l.received.has(stage) && l.sent === null);
  /** A stage-0 tab's view of a 3-stage route: the stage-1 replicas it feeds, the last stage's that send it tokens. */
  h.fed = () => h.to(0);
  h.tokenSenders = () => h.from(2);
  h.channels = (l) => open(l);
  /** One chunk as frames.ts lays it out; every field may be set to anything. */
  h.chunk = (o) => {
    const dims = o.dims ?? [1, 1, 160];
    const rank = o.rank ?? dims.length;
    const body = o.bodyBytes ?? 4 * dims.reduce((a, b) => a * b, 1);
    const buf = new ArrayBuffer(32 + 4 * dims.length + body);
    const v = new DataView(buf);
    v.setUint32(0, o.magic ?? MAGIC, true);
    v.setUint8(4, o.version ?? 1);
    v.setUint8(5, o.dtype ?? 1);
    v.setUint8(6, rank);
    v.setUint8(7, o.era ?? 0);
    v.setUint32(8, o.sessionId ?? 0x7fff0001, true);
    v.setUint32(12, o.step ?? 0, true);
    v.setUint16(16, o.stage ?? 0, true);
    v.setUint16(18, o.replica ?? 0, true);
    v.setUint16(20, o.index ?? 0, true);
    v.setUint16(22, o.count ?? 1, true);
    v.setUint32(24, o.totalBytes ?? body, true);
    if (o.fill !== undefined && body % 4 === 0) new Float32Array(buf, 32 + 4 * dims.length, body / 4).fill(o.fill);
    let sum = 0x811c9dc5;
    const bytes = new Uint8Array(buf, 32 + 4 * dims.length);
    for (let i = 0; i < bytes.length; i++) sum = Math.imul(sum ^ bytes[i], 0x01000193) >>> 0;
    v.setUint32(28, o.sum ?? sum, true);
    dims.forEach((d, j) => v.setUint32(32 + 4 * j, d, true));
    return buf;
  };
  /** Sends each message on dc, waiting while more than 4 MiB is buffered (Chromium closes a channel past 16 MiB). */
  h.pour = async (dc, messages, deadlineMs = 30000) => {
    const until = performance.now() + deadlineMs;
    for (const m of messages) {
      while (dc.bufferedAmount > 4 * 1024 * 1024) {
        if (performance.now() > until || dc.readyState !== 'open') return false;
        await new Promise((r) => setTimeout(r, 5));
      }
      if (dc.readyState !== 'open') return false;
      send.call(dc, m);
    }
    return true;
  };
})();`;

/** What HOSTILE_HOOKS installs, as the spec's page.evaluate calls see it. */
declare global {
  interface Window {
    __hostile?: {
      to(stage: number): HostileLink[];
      from(stage: number): HostileLink[];
      fed(): HostileLink[];
      tokenSenders(): HostileLink[];
      channels(l: HostileLink): RTCDataChannel[];
      chunk(o: ChunkFields): ArrayBuffer;
      pour(dc: RTCDataChannel, messages: readonly (ArrayBuffer | string)[], deadlineMs?: number): Promise<boolean>;
      sentSome: number;
      /** Every peer connection the page made (a spec's diagnostics). */
      links: HostileLink[];
    };
  }
}

export interface HostileLink {
  /** The stages whose frames came in on it. */
  readonly received: ReadonlySet<number>;
  readonly sent: { sessionId: number; step: number; stage: number; replica: number; era: number; at: number } | null;
}

export interface ChunkFields {
  magic?: number;
  version?: number;
  dtype?: number;
  rank?: number;
  era?: number;
  sessionId?: number;
  step?: number;
  stage?: number;
  replica?: number;
  index?: number;
  count?: number;
  totalBytes?: number;
  sum?: number;
  dims?: number[];
  bodyBytes?: number;
  fill?: number;
}
