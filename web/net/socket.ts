import { io, type Socket } from 'socket.io-client';
import type { ClientToServerEvents, Role, ServerToClientEvents } from '../../shared/protocol/messages.js';
import { PROTOCOL_VERSION } from '../../shared/protocol/version.js';

export type SwarmSocket = Socket<ServerToClientEvents, ClientToServerEvents>;

/** The typed Socket.IO connection to the coordinator; reconnects by itself with back-off. */
export function connectSwarm(role: Role, url: string = location.origin): SwarmSocket {
  return io(url, {
    auth: { protocol: PROTOCOL_VERSION, role },
    transports: ['websocket'],
    reconnectionDelay: 500,
    reconnectionDelayMax: 10_000,
  });
}
