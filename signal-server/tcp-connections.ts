/**
 * Plain TCP connections held at once per client address (HTTP requests, ones that send nothing): an address may hold
 * twice MAX_SOCKETS_PER_ADDRESS, and one more is closed as it opens. A connection Engine.IO accepted as a WebSocket
 * gives its place back (`upgraded`): Socket.IO's connections are bounded by address-sockets.ts, which tells a refused
 * page why. Any other upgrade request keeps its place (one to a path nobody serves is only half-closed, and a client
 * that ignores that would hold it for good: a review found 40 held from one address past a limit of 8). Before, the
 * per-address bound stopped at Socket.IO: plain connections were bounded by the HTTP timeouts alone (each lasts at
 * most about 11 or 31 s), so an address opening hundreds a second held the server's file descriptors. A trusted
 * proxy's connections (TRUSTED_PROXIES) and this machine's own addresses are not counted: every client behind them
 * arrives from that one address, and the proxy bounds its clients (docs/faults.md).
 */
import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import type { AddressSockets } from './address-sockets.js';
import type { TrustedProxies } from './http/client-address.js';

/**
 * Counts `server`'s connections by address in `held`; one over is destroyed at once and `refused` is told. `upgraded`
 * gives a connection's place back once it is a WebSocket of Socket.IO's.
 */
export function limitConnections(
  server: Server,
  held: AddressSockets,
  proxies: TrustedProxies,
  refused: (address: string) => void,
): { upgraded(socket: Socket): void } {
  const places = new WeakMap<Socket, () => void>();
  server.on('connection', (socket: Socket) => {
    const address = socket.remoteAddress ?? 'unknown';
    if (proxies.trusts(address)) return;
    const release = held.admit(address);
    if (release === null) {
      socket.destroy();
      refused(address);
      return;
    }
    places.set(socket, release);
    socket.once('close', release);
  });
  return { upgraded: (socket) => places.get(socket)?.() };
}
