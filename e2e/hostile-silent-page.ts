// The hostile volunteer of e2e/hostile-silent.spec.ts: a real volunteer tab
// (it loads its stage and answers its challenge honestly, so it is routed)
// with this script added. It never completes WebRTC signalling with anyone:
// every `signal` event its page would send through the server's relay (offers,
// answers, candidates) is dropped, so no neighbour ever gets a data channel to
// it. Yet it says `session:joined` for each session it is given, as soon as the
// `session:open` arrives, and drops the `step:failed` its page would send when
// its own connections time out. Plain JavaScript in a string: it runs in the
// page as it is.

/** Installs `window.__silent` in the page; the page's socket may already be open (it hooks the prototypes). */
export const SILENT_HOOKS = `(() => {
  if (window.__silent) return;
  const c = { peers: [], counts: { signalsDropped: 0, failuresDropped: 0, joinsSent: 0 }, sessions: [] };
  window.__silent = c;
  const wsSend = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    if (typeof data === 'string' && data.startsWith('42["signal"')) {
      try {
        const to = JSON.parse(data.slice(2))[1].to;
        if (typeof to === 'string' && !c.peers.includes(to)) c.peers.push(to);
      } catch {}
      c.counts.signalsDropped += 1;
      return;
    }
    if (typeof data === 'string' && data.startsWith('42["step:failed"')) {
      c.counts.failuresDropped += 1;
      return;
    }
    return wsSend.call(this, data);
  };
  // Socket.IO reads each inbound message's data once: a session:open seen there is answered "joined" at once.
  const dataOf = Object.getOwnPropertyDescriptor(MessageEvent.prototype, 'data').get;
  Object.defineProperty(MessageEvent.prototype, 'data', {
    configurable: true,
    get() {
      const d = dataOf.call(this);
      const ws = this.target;
      if (typeof d === 'string' && ws instanceof WebSocket && d.startsWith('42["session:open"')) {
        try {
          const sessionId = JSON.parse(d.slice(2))[1].sessionId;
          if (typeof sessionId === 'number' && !c.sessions.includes(sessionId)) {
            c.sessions.push(sessionId);
            wsSend.call(ws, '42' + JSON.stringify(['session:joined', { sessionId }]));
            c.counts.joinsSent += 1;
          }
        } catch {}
      }
      return d;
    },
  });
})();`;

export interface SilentCounts {
  readonly signalsDropped: number;
  readonly failuresDropped: number;
  readonly joinsSent: number;
}

/** What SILENT_HOOKS installs, as the spec's page.evaluate calls see it. */
declare global {
  interface Window {
    __silent?: { readonly peers: string[]; readonly counts: SilentCounts; readonly sessions: number[] };
  }
}
