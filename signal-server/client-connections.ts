/**
 * The server's bounds on one client's Engine.IO connections, kept where the
 * bytes arrive: below Socket.IO, so that a connection that never joins the
 * namespace, or leaves it and stays (a Socket.IO DISCONNECT packet), is held
 * to them as a page's is.
 *
 * - Connections per address (AddressSockets): counted as each opens, given
 *   back as it closes. One over the limit is refused: its page is told why
 *   when it asks to join the namespace (see `refusal`), and the connection is
 *   closed REFUSED_CLOSE_MS after it opened, or as soon as it has sent more
 *   than REFUSED_MAX_BYTES. So is one that opens while its address is past
 *   its byte budget (below). A closed connection may send 64 KiB more.
 * - Bytes (ByteBudget): every packet is charged as it arrives, before
 *   Socket.IO decodes it (an event, an acknowledgement, an attachment, a
 *   packet of no namespace). An address's connections share one budget, kept
 *   after they close; this machine's own addresses have one a connection.
 *   Past its budget by its `maxDropped`, the connection is cut off: its
 *   sockets are told ERR_RATE_LIMITED, and it is read no more.
 */

import type { AddressSockets } from './address-sockets.js';
import type { EventBudgetOptions } from './coordinator/event-budget.js';
import { ByteBudget, ByteBudgets } from './coordinator/event-budget.js';
import { addressKey } from './coordinator/identity.js';
import type { TrustedProxies } from './http/client-address.js';
import { chunkBytes } from './measured-parser.js';
import type { SwarmServer } from './socket-handlers.js';

type SwarmSocket = Parameters<Parameters<SwarmServer['on']>[1]>[0];
/** An Engine.IO connection, as Socket.IO's sockets hold it. */
export type EngineConnection = SwarmSocket['conn'];

/** How long a connection over its address's limit stays open for its page to be told why. */
export const REFUSED_CLOSE_MS = 1_000;
/** What a refused connection may send (its request to join, and a little more) before it is closed at once. */
export const REFUSED_MAX_BYTES = 16 * 1024;
/** What a connection the server closed may still send (its answer to the close is a few bytes) before it is dropped. */
const CLOSED_MAX_BYTES = 64 * 1024;
/** What one connection may send while its address is past its budget by maxDropped before it is cut off (a page's pong or a small report is not). */
const OVER_ALLOWANCE_BYTES = 64 * 1024;
/** How long a connection cut off for flooding stays, unread, for ERR_RATE_LIMITED to reach it. */
const CUT_LINGER_MS = 1_000;

export interface ClientConnection {
  /** The client's address: the connection's, or a trusted proxy's X-Forwarded-For. */
  readonly address: string;
  readonly bytes: ByteBudget;
  /** Whether the budget is its address's (shared), not its own (this machine's addresses). */
  readonly shared: boolean;
  /** Why it is refused (opened over its address's limit, or while its address was past its byte budget), or null. */
  readonly refused: string | null;
  /** Its Socket.IO sockets (a page has one). */
  readonly sockets: Set<SwarmSocket>;
  cut: boolean;
  /** Bytes it sent while its address was past its budget by maxDropped: past OVER_ALLOWANCE_BYTES it is cut off. */
  overBytes: number;
}

export interface ClientConnectionsOptions {
  readonly held: AddressSockets;
  readonly byteOptions: EventBudgetOptions;
  readonly localAddresses: readonly string[];
  readonly proxies: TrustedProxies;
  /** A connection cut off for its bytes (count it, log it). */
  readonly cutOff: (c: ClientConnection, message: string) => void;
  /** A connection refused for its address's count (count it, log it). */
  readonly refusedOne: (address: string, message: string) => void;
}

function mib(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}

export class ClientConnections {
  private readonly byConnection = new WeakMap<EngineConnection, ClientConnection>();
  private readonly addressBytes: ByteBudgets;

  constructor(private readonly o: ClientConnectionsOptions) {
    this.addressBytes = new ByteBudgets(o.byteOptions);
  }

  /** Follows every Engine.IO connection of `io` from its opening. */
  attach(io: SwarmServer): void {
    io.engine.on('connection', (raw: EngineConnection) => this.opened(raw));
  }

  /** What is kept of `raw` (undefined only for a connection opened before attach). */
  of(raw: EngineConnection): ClientConnection | undefined {
    return this.byConnection.get(raw);
  }

  /** The code and message a page is refused with when its connection was refused as it opened; null when it was not. */
  refusal(raw: EngineConnection): { readonly code: 'ERR_RATE_LIMITED'; readonly message: string } | null {
    const why = this.of(raw)?.refused ?? null;
    return why === null ? null : { code: 'ERR_RATE_LIMITED', message: why };
  }

  /** A Socket.IO socket of `raw` joined: it is told if its connection is cut off. */
  joined(raw: EngineConnection, socket: SwarmSocket): void {
    const c = this.of(raw);
    if (c === undefined) return;
    c.sockets.add(socket);
    socket.once('disconnect', () => c.sockets.delete(socket));
  }

  /** The bytes of an event its connection's budget is given back (an owed step report). */
  refund(raw: EngineConnection, bytes: number): void {
    this.of(raw)?.bytes.refund(bytes);
  }

  /** An event that is not an owed report, by its connection's bytes: served, dropped, or cut off (done here). */
  admit(raw: EngineConnection): 'serve' | 'drop' | 'cut' {
    const c = this.of(raw);
    if (c === undefined) return 'serve';
    const verdict = c.bytes.admit();
    if (verdict !== 'abusive') return verdict;
    if (c.overBytes <= OVER_ALLOWANCE_BYTES) return 'drop';
    this.cut(raw, c);
    return 'cut';
  }

  /** Cuts `raw` off (its sockets told `message`), once; an ERR_RATE_LIMITED by the event budget comes through here too. */
  cutOff(raw: EngineConnection, message: string): void {
    const c = this.of(raw);
    if (c !== undefined) this.cut(raw, c, message);
  }

  private opened(raw: EngineConnection): void {
    const request = raw.request;
    const address = this.o.proxies.clientAddress(request.socket.remoteAddress, request.headers['x-forwarded-for']);
    const shared = !this.o.localAddresses.includes(address);
    const bytes = shared ? this.addressBytes.of(addressKey(address)) : new ByteBudget(this.o.byteOptions);
    const { ratePerS, burst } = this.o.byteOptions;
    const release = this.o.held.admit(address);
    const refused =
      release === null
        ? `an address may hold at most ${this.o.held.max} connections to this server at once, and this one holds as many; close one (a tab of this site) and try again`
        : bytes.over()
          ? `this address sent more than ${mib(ratePerS)} a second (bursts of ${mib(burst)}) a moment ago; try again in a few seconds`
          : null;
    const c: ClientConnection = { address, bytes, shared, refused, sockets: new Set(), cut: false, overBytes: 0 };
    this.byConnection.set(raw, c);
    if (release !== null) raw.once('close', release);
    // Once closed, little more is read: a WebSocket being closed reads (and throws away) whatever its peer still
    // sends until the peer answers the close, which a flooder never does (a red-team pass: 858 MiB read from 100
    // connections the server had closed). What the server still writes (an eviction's reason) goes out as before.
    raw.once('close', () => {
      let after = 0;
      request.socket.on('data', (chunk: Buffer) => {
        after += chunk.length;
        if (after > CLOSED_MAX_BYTES) request.socket.destroy();
      });
    });
    if (refused !== null) {
      this.o.refusedOne(address, refused);
      setTimeout(() => raw.close(), REFUSED_CLOSE_MS).unref();
    }
    let refusedBytes = 0;
    // Engine.IO hands each packet over before Socket.IO decodes it.
    raw.on('packet', (p: { readonly data?: unknown }) => {
      const n = chunkBytes(p.data);
      if (refused !== null) {
        // Charged too (its address's budget does not refill while it floods), and closed past what joining takes.
        bytes.arrived(n);
        refusedBytes += n;
        if (refusedBytes > REFUSED_MAX_BYTES) request.socket.destroy();
        return;
      }
      // An address's connections share the budget: one of them is cut off for what it sends itself past the line
      // (a flooder's next packet, at once), not for a pong of a neighbour behind the same address.
      if (bytes.arrived(n) !== 'abusive') return;
      c.overBytes += n;
      if (c.overBytes > OVER_ALLOWANCE_BYTES) this.cut(raw, c);
    });
  }

  private cut(raw: EngineConnection, c: ClientConnection, message?: string): void {
    if (c.cut) return;
    c.cut = true;
    const { ratePerS, burst } = this.o.byteOptions;
    const why =
      message ??
      `more than ${mib(ratePerS)} a second${c.shared ? ' from this address' : ''} (bursts of ${mib(burst)}); ${c.bytes.droppedEvents} events dropped; disconnected`;
    this.o.cutOff(c, why);
    for (const s of c.sockets) s.emit('server:error', { code: 'ERR_RATE_LIMITED', message: why });
    for (const s of c.sockets) s.disconnect(true);
    // Read none of what it still has in flight (a flood is thousands of packets), and let the connection go once
    // the answer is out: the socket of a WebSocket connection is that of its upgrade request.
    const tcp = raw.request.socket;
    tcp.pause();
    setTimeout(() => tcp.destroy(), CUT_LINGER_MS).unref();
  }
}
