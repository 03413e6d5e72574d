/**
 * The browser side of bench/hop-floor.ts: a page and a dedicated worker
 * script, served as they are (plain JavaScript in strings: the bench serves
 * them from its own tiny HTTP server, no build). Both hold the same ping-pong
 * loop; a page or worker is either the pinger (times round trips) or the
 * echo (sends every message straight back).
 */

/** The memory a 'stream' stand-in for a stage's compute reads through, in MB: about a SmolLM-135M-shaped stage's weights (30 layers in 3 stages at float32: 160 MB), far beyond any cache. */
export const STREAM_MB = 160;

/**
 * One ping-pong loop over an endpoint { send(bytes), onReply(f) }: `warm`
 * untimed round trips, then up to `n` timed ones, stopped at `deadlineMs`
 * (bounded in time as well as count); a reply lost for 5 s ends it. With
 * `busyMs`, the thread is busy that long before each send, off the clock (a
 * stage's compute, in the ring): spinning on the clock ('spin'), or reading
 * on through a buffer of STREAM_MB ('stream'), as a stage whose weights do
 * not fit in the caches streams them from memory, evicting what the other
 * threads of the hop had cached.
 */
const PING_LOOP = `
function spin(ms) { const end = performance.now() + ms; while (performance.now() < end); }
let mem = null, at = 0, sink = 0;
function stream(ms) {
  if (mem === null) { mem = new Float64Array(${STREAM_MB} * 131072); mem.fill(1); }
  const end = performance.now() + ms;
  while (performance.now() < end) {
    let s = 0;
    for (let k = 0; k < 16384; k += 8) s += mem[(at + k) % mem.length];
    at = (at + 16384) % mem.length;
    sink += s;
  }
}
function busy(ms, how) { if (how === 'stream') stream(ms); else spin(ms); }
async function pingLoop(ep, size, n, warm, deadlineMs, busyMs = 0, how = 'spin') {
  const buf = new Uint8Array(size);
  for (let i = 0; i < size; i++) buf[i] = i & 255;
  const rtts = [];
  const end = performance.now() + deadlineMs;
  let resolve = null;
  ep.onReply(() => { const r = resolve; resolve = null; if (r) r(true); });
  for (let i = 0; i < warm + n && performance.now() < end; i++) {
    busy(busyMs, how);
    const got = new Promise((r) => { resolve = r; });
    const timer = setTimeout(() => { const r = resolve; resolve = null; if (r) r(false); }, 5000);
    const t0 = performance.now();
    ep.send(buf.slice());
    const ok = await got;
    const t1 = performance.now();
    clearTimeout(timer);
    if (!ok) break;
    if (i >= warm) rtts.push(t1 - t0);
  }
  return rtts;
}
function dcEndpoint(dc) {
  return { send: (b) => dc.send(b), onReply: (f) => { dc.onmessage = f; } };
}
function echoOn(dc) {
  dc.binaryType = 'arraybuffer';
  dc.onmessage = (e) => dc.send(e.data);
}
`;

/** The worker: holds a transferred data channel or a MessagePort, echoes or pings on it; echoes the page's own messages. */
export const WORKER_JS = `${PING_LOOP}
let ep = null;
const ring = { in: null, out: null };
onmessage = (ev) => {
  const m = ev.data;
  if (m.type === 'ring-dc') {
    const dc = m.dc;
    dc.binaryType = 'arraybuffer';
    ring[m.slot] = dc;
    const opened = () => postMessage({ type: 'open' });
    if (dc.readyState === 'open') opened(); else dc.onopen = opened;
  } else if (m.type === 'ring-follow') {
    ring.in.onmessage = (e) => { busy(m.busyMs, m.how); ring.out.send(e.data); };
  } else if (m.type === 'ring-lead') {
    const lap = { send: (b) => ring.out.send(b), onReply: (f) => { ring.in.onmessage = f; } };
    pingLoop(lap, m.size, m.n, m.warm, m.deadlineMs, m.busyMs, m.how).then((laps) => postMessage({ type: 'rtts', rtts: laps }));
  } else if (m.type === 'dc') {
    const dc = m.dc;
    dc.binaryType = 'arraybuffer';
    if (m.role === 'echo') echoOn(dc); else ep = dcEndpoint(dc);
    const opened = () => postMessage({ type: 'open' });
    if (dc.readyState === 'open') opened(); else dc.onopen = opened;
  } else if (m.type === 'port') {
    const port = m.port;
    if (m.role === 'echo') port.onmessage = (e) => port.postMessage(e.data);
    else ep = { send: (b) => port.postMessage(b), onReply: (f) => { port.onmessage = f; } };
    postMessage({ type: 'open' });
  } else if (m.type === 'ping') {
    pingLoop(ep, m.size, m.n, m.warm, m.deadlineMs).then((rtts) => postMessage({ type: 'rtts', rtts }));
  } else if (m.type === 'echo') {
    postMessage({ type: 'echo', b: m.b });
  }
};
postMessage({ type: 'up' });
`;

/**
 * The page: window.hop, driven by the bench through page.evaluate. A
 * negotiated channel (id 0, both sides create it, no in-band open) is made
 * right after the connection and, in worker mode, transferred to a dedicated
 * worker in that same task, as web/volunteer/worker-path.ts does.
 */
const PAGE_JS = `${PING_LOOP}
function newWorker() {
  const w = new Worker('/hop-worker.js');
  return new Promise((resolve) => { w.onmessage = (e) => { if (e.data.type === 'up') resolve(w); }; });
}
function nextMessage(w, type) {
  return new Promise((resolve) => {
    const prev = w.onmessage;
    w.onmessage = (e) => { if (e.data.type === type) { w.onmessage = prev; resolve(e.data); } };
  });
}
/** The offer (offer null) or the answer to it, with every candidate in it: loopback needs no trickling. */
async function negotiate(pc, offer) {
  if (offer === null) await pc.setLocalDescription(await pc.createOffer());
  else {
    await pc.setRemoteDescription({ type: 'offer', sdp: offer });
    await pc.setLocalDescription(await pc.createAnswer());
  }
  return gathered(pc);
}
async function gathered(pc) {
  if (pc.iceGatheringState !== 'complete')
    await new Promise((r) => { pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === 'complete') r(); }; });
  return pc.localDescription.sdp;
}
window.hop = {
  pc: null, dc: null, worker: null, opened: null,
  conditions() {
    return { visibility: document.visibilityState, focus: document.hasFocus(), isolated: self.crossOriginIsolated };
  },
  async connect(mode, role, offer) {
    if (this.pc) this.pc.close();
    const worker = mode === 'worker' ? await newWorker() : null;
    this.worker = worker;
    // One task: the connection, the negotiated channel and its transfer.
    const pc = new RTCPeerConnection({ iceServers: [] });
    const dc = pc.createDataChannel('hop', { negotiated: true, id: 0, ordered: true });
    this.pc = pc;
    if (worker) {
      this.opened = nextMessage(worker, 'open');
      worker.postMessage({ type: 'dc', dc, role }, [dc]);
      this.dc = null;
    } else {
      dc.binaryType = 'arraybuffer';
      if (role === 'echo') echoOn(dc);
      this.dc = dc;
      this.opened = dc.readyState === 'open' ? Promise.resolve() : new Promise((r) => { dc.onopen = r; });
    }
    return negotiate(pc, offer);
  },
  /**
   * A ring of tabs, each a worker holding the channel from the previous tab
   * ('in') and to the next ('out'): the swarm's token path with no product
   * code. Slots are connected one link at a time by the bench.
   */
  ringWorker: null, ringPcs: {}, ringOpen: [],
  async ringLink(slot, offer) {
    if (!this.ringWorker) this.ringWorker = await newWorker();
    const w = this.ringWorker;
    const pc = new RTCPeerConnection({ iceServers: [] });
    const dc = pc.createDataChannel('ring', { negotiated: true, id: 0, ordered: true });
    this.ringPcs[slot] = pc;
    this.ringOpen.push(nextMessage(w, 'open'));
    w.postMessage({ type: 'ring-dc', dc, slot }, [dc]);
    return negotiate(pc, offer);
  },
  async ringAccept(slot, answer) { await this.ringPcs[slot].setRemoteDescription({ type: 'answer', sdp: answer }); },
  async ringReady() { await Promise.all(this.ringOpen); },
  ringFollow(busyMs, how) { this.ringWorker.postMessage({ type: 'ring-follow', busyMs, how }); },
  async ringLead(size, busyMs, how, n, warm, deadlineMs) {
    const got = nextMessage(this.ringWorker, 'rtts');
    this.ringWorker.postMessage({ type: 'ring-lead', size, busyMs, how, n, warm, deadlineMs });
    return (await got).rtts;
  },
  async accept(answer) { await this.pc.setRemoteDescription({ type: 'answer', sdp: answer }); },
  async open() { await this.opened; },
  async ping(size, n, warm, deadlineMs) {
    if (this.worker) {
      const got = nextMessage(this.worker, 'rtts');
      this.worker.postMessage({ type: 'ping', size, n, warm, deadlineMs });
      return (await got).rtts;
    }
    return pingLoop(dcEndpoint(this.dc), size, n, warm, deadlineMs);
  },
  /** Two workers joined by a MessageChannel: the first pings, the second echoes. */
  async ports(size, n, warm, deadlineMs) {
    const [a, b] = [await newWorker(), await newWorker()];
    const ch = new MessageChannel();
    const openA = nextMessage(a, 'open');
    const openB = nextMessage(b, 'open');
    a.postMessage({ type: 'port', port: ch.port1, role: 'ping' }, [ch.port1]);
    b.postMessage({ type: 'port', port: ch.port2, role: 'echo' }, [ch.port2]);
    await Promise.all([openA, openB]);
    const got = nextMessage(a, 'rtts');
    a.postMessage({ type: 'ping', size, n, warm, deadlineMs });
    const rtts = (await got).rtts;
    a.terminate(); b.terminate();
    return rtts;
  },
  /** The page and its own worker: a postMessage there and back. */
  async self(size, n, warm, deadlineMs) {
    const w = await newWorker();
    let on = null;
    w.onmessage = (e) => { if (e.data.type === 'echo' && on) on(e); };
    const rtts = await pingLoop({ send: (b) => w.postMessage({ type: 'echo', b }), onReply: (f) => { on = f; } }, size, n, warm, deadlineMs);
    w.terminate();
    return rtts;
  },
  /** Socket.IO to the bench's server on 127.0.0.1 (WebSocket only), each message acknowledged with its bytes. */
  async socket(size, n, warm, deadlineMs) {
    const s = io({ transports: ['websocket'] });
    await new Promise((r) => s.on('connect', r));
    let on = null;
    const rtts = await pingLoop({ send: (b) => s.emit('hop', b, (back) => on && on(back)), onReply: (f) => { on = f; } }, size, n, warm, deadlineMs);
    s.close();
    return rtts;
  },
};
`;

export const PAGE_HTML = `<!doctype html><meta charset="utf-8"><title>hop floor</title>
<script src="/socket.io/socket.io.js"></script>
<script>${PAGE_JS}</script>`;
