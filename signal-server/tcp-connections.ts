/**
 * TCP connections held at once per client address, of any kind (HTTP requests, WebSocket upgrades, ones that send
 * nothing): an address may hold twice MAX_SOCKETS_PER_ADDRESS (its Socket.IO connections, which address-sockets.ts
 * bounds as each opens and tells why when refused, and as many again of HTTP), and one more is closed as it opens.
 * Before, the per-address bound stopped at Socket.IO: plain connections were bounded by the HTTP timeouts alone (each
 * lasts at most about 11 or 31 s), so an address opening hundreds a second held the server's file descriptors.
 * A trusted proxy's connections (TRUSTED_PROXIES) and this machine's own addresses are not counted: every client
 * behind them arrives from that one address, and the proxy bounds its clients (docs/faults.md).
 */
import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import type { AddressSockets } from './address-sockets.js';
import type { TrustedProxies } from './http/client-address.js';

/** Counts `server`'s connections by address in `held`; one over is destroyed at once and `refused` is told. */
export function limitConnections(server: Server, held: AddressSockets, proxies: TrustedProxies, refused: (address: string) => void): void {
  server.on('connection', (socket: Socket) => {
    const address = socket.remoteAddress ?? 'unknown';
    if (proxies.trusts(address)) return;
    const release = held.admit(address);
    if (release === null) {
      socket.destroy();
      refused(address);
      return;
    }
    socket.once('close', release);
  });
}
