/**
 * Plain TCP connections held at once per client address (HTTP requests, ones that send nothing): an address may hold
 * twice MAX_SOCKETS_PER_ADDRESS, and one more is closed as it opens. A connection upgraded to a WebSocket gives its
 * place back: Socket.IO's connections are bounded by address-sockets.ts, which tells a refused page why. Before, the
 * per-address bound stopped at Socket.IO: plain connections were bounded by the HTTP timeouts alone (each lasts at
 * most about 11 or 31 s), so an address opening hundreds a second held the server's file descriptors. A trusted
 * proxy's connections (TRUSTED_PROXIES) and this machine's own addresses are not counted: every client behind them
 * arrives from that one address, and the proxy bounds its clients (docs/faults.md).
 */
import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import type { AddressSockets } from './address-sockets.js';
import type { TrustedProxies } from './http/client-address.js';

/** Counts `server`'s connections by address in `held`; one over is destroyed at once and `refused` is told. */
export function limitConnections(server: Server, held: AddressSockets, proxies: TrustedProxies, refused: (address: string) => void): void {
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
  server.on('upgrade', (_req, socket: Socket) => places.get(socket)?.());
}
