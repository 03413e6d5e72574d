// Raw socket.io clients for integration tests: the real protocol, nothing computed.
import { io as connect, type Socket } from 'socket.io-client';
import type { ClientToServerEvents, ServerToClientEvents, StageAssignment } from '../../shared/protocol/messages.js';
import { PROTOCOL_VERSION } from '../../shared/protocol/version.js';

export type Client = Socket<ServerToClientEvents, ClientToServerEvents>;

/** How long a test waits for one event. */
export const EVENT_TIMEOUT_MS = 5000;

/** A new client of `url` (no reconnection), with the given handshake auth, from `localAddress` (127.0.0.x: a distinct client). */
export function connectClient(
  url: string,
  auth: Record<string, unknown> = { protocol: PROTOCOL_VERSION, role: 'volunteer' },
  localAddress?: string,
): Client {
  return connect(url, {
    auth,
    transports: ['websocket'],
    reconnection: false,
    forceNew: true,
    ...(localAddress === undefined ? {} : { localAddress }),
  });
}

/**
 * A stranger from `address` that says hello as a volunteer (claiming plenty of memory) and then nothing: it never
 * loads, never says ready. Its client key is `clientKey`, or one made from the address.
 */
export function silentStranger(url: string, address: string, clientKey = `stranger-${address.replaceAll('.', '-')}`): Client {
  const c = connectClient(url, { protocol: PROTOCOL_VERSION, role: 'volunteer' }, address);
  c.on('connect', () =>
    c.emit('volunteer:hello', {
      backend: 'wasm',
      adapter: null,
      fault: null,
      clientKey,
      capacity: { deviceMemoryGiB: 64, maxBufferBytes: null, maxStorageBindingBytes: null },
    }),
  );
  return c;
}

/** The next `event` that `c` receives, or a rejection after EVENT_TIMEOUT_MS. */
export function next<T>(c: Client, event: keyof ServerToClientEvents): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} within ${EVENT_TIMEOUT_MS} ms`)), EVENT_TIMEOUT_MS);
    (c as unknown as { once: (e: string, f: (m: T) => void) => void }).once(event, (m: T) => {
      clearTimeout(timer);
      resolve(m);
    });
  });
}

/** A client that says hello as a volunteer: its id and its stage. */
export async function helloVolunteer(c: Client): Promise<{ c: Client; id: string; assign: StageAssignment }> {
  const welcome = next<{ volunteerId: string }>(c, 'volunteer:welcome');
  const assign = next<StageAssignment>(c, 'volunteer:assign');
  c.emit('volunteer:hello', { backend: 'wasm', adapter: null, fault: null, clientKey: null });
  return { c, id: (await welcome).volunteerId, assign: await assign };
}
