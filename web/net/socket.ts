import { io, type Socket } from 'socket.io-client';
import type { ClientToServerEvents, Role, ServerToClientEvents } from '../../shared/protocol/messages.js';
import { PROTOCOL_VERSION } from '../../shared/protocol/version.js';

export type SwarmSocket = Socket<ServerToClientEvents, ClientToServerEvents>;

/** The code and message a server's refusal of the connection carries (its middleware's error data), if any. */
export function connectRefusal(e: Error): { readonly code: string; readonly message: string } | null {
  const data: unknown = (e as { data?: unknown }).data;
  if (typeof data !== 'object' || data === null) return null;
  const { code, message } = data as { code?: unknown; message?: unknown };
  return typeof code === 'string' && typeof message === 'string' ? { code, message } : null;
}

/**
 * The typed Socket.IO connection to the coordinator; reconnects by itself with back-off, also after the server
 * refused it for holding too many connections from this address (ERR_RATE_LIMITED), which Socket.IO does not retry.
 */
export function connectSwarm(role: Role, url: string = location.origin): SwarmSocket {
  const socket: SwarmSocket = io(url, {
    auth: { protocol: PROTOCOL_VERSION, role },
    transports: ['websocket'],
    reconnectionDelay: 500,
    reconnectionDelayMax: 10_000,
  });
  let refusals = 0;
  let retry: ReturnType<typeof setTimeout> | null = null;
  socket.on('connect', () => {
    refusals = 0;
  });
  socket.on('connect_error', (e) => {
    if (socket.active || connectRefusal(e)?.code !== 'ERR_RATE_LIMITED') return;
    // A place frees when another tab from this address closes: ask again after 2, 4, … up to 60 s, with jitter.
    const delayMs = Math.min(60_000, 2_000 * 2 ** refusals) * (0.5 + Math.random() / 2);
    refusals += 1;
    if (retry !== null) clearTimeout(retry);
    retry = setTimeout(() => {
      retry = null;
      if (!socket.connected && !socket.active) socket.connect();
    }, delayMs);
  });
  // A page that closes its connection (a paused volunteer, a page going away) is not connected again behind its back.
  const disconnect = socket.disconnect.bind(socket);
  socket.disconnect = () => {
    if (retry !== null) clearTimeout(retry);
    retry = null;
    return disconnect();
  };
  return socket;
}
