/**
 * A send timeout, as a web server's (nginx's `send_timeout`): a connection with bytes waiting to go out, none of which
 * the kernel took for `sendMs`, is closed. Without it a client that asked for a response and read none of it held the
 * response's bytes in the server's memory, and with an API request its concurrency slots, for as long as it kept the
 * connection open: Node has no timeout on a response being written. Closing it ends the request as if the client had
 * gone (an API generation is cancelled, its slots freed: completions.ts, pipelined-requests.ts).
 *
 * Measured on the socket: what the kernel took (`bytesWritten` less what Node still holds) must grow while Node
 * holds any. Node holds bytes only once the kernel's buffers are full, and the kernel takes more only as a part of
 * them frees (up to a third of the send buffer at a time), so a client reading steadily but very slowly (under about
 * 20 KB/s on large buffers) can be closed, as with nginx. WebSockets too: one that reads nothing answers Engine.IO's
 * pings without reading, and what the server sends it (feeds, relayed frames) would pile up.
 */
import type { Server } from 'node:http';
import type { Socket } from 'node:net';

/** Milliseconds a connection's waiting bytes may go untaken by its client (nginx's default, 60 s). */
export const DEFAULT_SEND_TIMEOUT_MS = 60_000;

interface Watched {
  /** Bytes the kernel had taken at the last progress. */
  sent: number;
  /** When the kernel last took bytes, or Node held none. */
  at: number;
}

/** Watches `server`'s connections until it closes; `onClose` hears of each connection it closes. */
export function watchSendTimeout(server: Server, sendMs: number, onClose: (socket: Socket) => void = () => {}): void {
  if (!(Number.isFinite(sendMs) && sendMs > 0)) throw new RangeError(`sendMs must be a positive number of ms, got ${sendMs}`);
  const watched = new Map<Socket, Watched>();
  server.on('connection', (socket: Socket) => {
    watched.set(socket, { sent: 0, at: performance.now() });
    socket.once('close', () => watched.delete(socket));
  });
  const check = () => {
    const now = performance.now();
    for (const [socket, w] of watched) {
      const held = socket.writableLength;
      const sent = socket.bytesWritten - held;
      if (held === 0 || sent > w.sent) {
        w.sent = sent;
        w.at = now;
      } else if (now - w.at >= sendMs) {
        watched.delete(socket);
        socket.destroy();
        onClose(socket);
      }
    }
  };
  const timer = setInterval(check, Math.min(1_000, Math.max(10, sendMs / 4)));
  timer.unref();
  server.once('close', () => clearInterval(timer));
}
