/**
 * The Socket.IO binding of the coordinator: the handshake, then for each
 * inbound event a parse at the boundary and a call of the coordinator's method.
 * A bad message is dropped with a logged reason and the sender is told the
 * code. All decisions live in coordinator/.
 */
import type { Server, Socket } from 'socket.io';
import type { WireErrorCode } from '../shared/protocol/errors.js';
import { describeValue } from '../shared/protocol/json-shape.js';
import { CLIENT_EVENTS, type ClientToServerEvents, type ServerToClientEvents } from '../shared/protocol/messages.js';
import {
  parseDigest,
  parseFailure,
  parseFrameMessage,
  parseGenerate,
  parseHandshake,
  parseHello,
  parseLogits,
  parseProof,
  parseReady,
  parseSessionJoined,
  parseSignal,
} from '../shared/protocol/validate.js';
import { DelayLine } from '../shared/swarm/delay-line.js';
import type { AccessControl } from './api/access.js';
import { REFUSED_CLOSE_MS } from './client-connections.js';
import type { Coordinator, VolunteerLink } from './coordinator/coordinator.js';
import { wireErrorOf } from './coordinator/generation.js';

export interface SocketData {
  role: 'volunteer' | 'requester';
  volunteerId: string | null;
  /** The client's address: the connection's, or a trusted proxy's X-Forwarded-For (set by the server first). */
  address: string;
}

export type SwarmServer = Server<ClientToServerEvents, ServerToClientEvents, Record<string, never>, SocketData>;
type SwarmSocket = Socket<ClientToServerEvents, ServerToClientEvents, Record<string, never>, SocketData>;

const KNOWN_EVENTS = new Set<string>(CLIENT_EVENTS);

/** Binds `coordinator` to every socket of `io`. */
export function bindSocketServer(
  io: SwarmServer,
  coordinator: Coordinator,
  log: (line: string) => void,
  /** Keys and rate limits for generations asked over Socket.IO (the chat page), as for the HTTP API. */
  access?: AccessControl,
  /** The bench's one-way delay on every message to a volunteer (and told to it, for its own sends); 0 = none. */
  netDelayMs = 0,
  /** Why the page that opened a handshake may not volunteer here (http/page-origins.ts), or null; absent: any may. */
  volunteerRefusal: (handshake: SwarmSocket['handshake']) => string | null = () => null,
): void {
  io.use((socket, next) => {
    const refused = (code: WireErrorCode, reason: string) => {
      log(`refused connection from ${socket.data.address}: ${reason}`);
      next(Object.assign(new Error(`${code}: ${reason}`), { data: { code, message: reason } }));
      // Its connection holds a place of its address's (client-connections.ts) until it goes: closed if it stays.
      const conn = socket.conn;
      setTimeout(() => conn.close(), REFUSED_CLOSE_MS).unref();
    };
    const auth = parseHandshake(socket.handshake.auth);
    if (!auth.ok) return refused(/protocol/.test(auth.reason) ? 'ERR_PROTOCOL_VERSION' : 'ERR_BAD_HANDSHAKE', auth.reason);
    if (auth.value.role === 'volunteer') {
      const foreign = volunteerRefusal(socket.handshake);
      if (foreign !== null) return refused('ERR_FOREIGN_ORIGIN', foreign);
    }
    socket.data.role = auth.value.role;
    socket.data.volunteerId = null;
    next();
  });
  io.on('connection', (socket) => bindSocket(socket, coordinator, log, access, netDelayMs));
}

function bindSocket(
  socket: SwarmSocket,
  coordinator: Coordinator,
  log: (line: string) => void,
  access: AccessControl | undefined,
  netDelayMs: number,
): void {
  const refuse = (code: WireErrorCode, message: string) => {
    log(`${socket.data.volunteerId ?? socket.id}: ${code} ${message}`);
    socket.emit('server:error', { code, message });
  };
  /** The volunteer id of this socket, or null after telling it to say hello first. */
  const volunteer = (event: string): string | null => {
    const id = socket.data.volunteerId;
    if (id === null) refuse('ERR_NOT_ASSIGNED', `${event}: say hello first`);
    return id;
  };
  // Unknown events are refused (and dropped) as middleware, after the socket's event budget.
  socket.use(([event], next) => {
    if (KNOWN_EVENTS.has(String(event))) return next();
    refuse('ERR_BAD_MESSAGE', `unknown event ${describeValue(event, 80)}`);
  });
  /**
   * Binds a client event's handler. Its own failure is logged and the sender told (ERR_INTERNAL), never thrown into
   * Socket.IO, which calls handlers outside any try: a throw there ends the server's process, every session with it.
   */
  const on = (event: keyof ClientToServerEvents, handler: (raw: unknown) => void): void => {
    const guarded = (raw: unknown): void => {
      try {
        handler(raw);
      } catch (e) {
        refuse('ERR_INTERNAL', `${event} failed here: ${e instanceof Error ? e.message : String(e)}`.slice(0, 300));
      }
    };
    // Every client event carries one payload, parsed by its handler: the typed overloads add nothing here.
    (socket as unknown as { on(event: string, listener: (raw: unknown) => void): void }).on(event, guarded);
  };
  on('volunteer:hello', (raw) => {
    const m = parseHello(raw);
    if (!m.ok) return refuse('ERR_BAD_MESSAGE', `hello: ${m.reason}`);
    if (socket.data.role !== 'volunteer') return refuse('ERR_BAD_MESSAGE', 'hello: only volunteers say hello');
    if (socket.data.volunteerId !== null) return refuse('ERR_BAD_MESSAGE', 'hello: already registered');
    // The coordinator's messages to this volunteer, each `netDelayMs` late and in order (none without a delay).
    const line = new DelayLine(netDelayMs);
    socket.once('disconnect', () => line.close());
    const link: VolunteerLink = {
      send: (event, ...args) => {
        if (!line.run(() => socket.emit(event, ...args))) log(`${socket.data.volunteerId ?? socket.id}: delay line full, ${event} dropped`);
      },
      // After what was sent before it (an eviction's reason); at once when the line is closed or full.
      disconnect: () => {
        if (!line.run(() => socket.disconnect(true))) socket.disconnect(true);
      },
    };
    socket.data.volunteerId = coordinator.hello(link, socket.data.address, m.value);
    // After the welcome (on the same line): the volunteer delays its own sends by as much, so each hop is delayed once.
    if (socket.data.volunteerId !== null && netDelayMs > 0) link.send('volunteer:net', { delayMs: netDelayMs });
  });
  on('volunteer:ready', (raw) => {
    const id = volunteer('ready');
    if (id === null) return;
    const m = parseReady(raw);
    if (!m.ok) return refuse('ERR_BAD_MESSAGE', `ready: ${m.reason}`);
    coordinator.ready(id, m.value);
  });
  on('volunteer:proof', (raw) => {
    const id = volunteer('proof');
    if (id === null) return;
    const m = parseProof(raw);
    if (!m.ok) return refuse('ERR_BAD_MESSAGE', `proof: ${m.reason}`);
    coordinator.proof(id, m.value);
  });
  on('signal', (raw) => {
    const from = socket.data.volunteerId;
    if (from === null) return refuse('ERR_NOT_LINKED', 'signal: say hello first');
    const m = parseSignal(raw);
    if (!m.ok) return refuse('ERR_BAD_MESSAGE', `signal: ${m.reason}`);
    if (!coordinator.relay(from, m.value.to, m.value.data)) refuse('ERR_NOT_LINKED', `signal: not linked to ${m.value.to}`);
  });
  on('frame', (raw) => {
    const from = socket.data.volunteerId;
    if (from === null) return refuse('ERR_NOT_LINKED', 'frame: say hello first');
    const m = parseFrameMessage(raw, 'to');
    if (!m.ok) return refuse('ERR_BAD_MESSAGE', `frame: ${m.reason}`);
    // Refused (and told) by the coordinator unless a live session links the two.
    coordinator.frame(from, m.value.peer, m.value.data);
  });
  on('session:joined', (raw) => {
    const m = parseSessionJoined(raw);
    const id = socket.data.volunteerId;
    if (!m.ok || id === null) return refuse('ERR_BAD_MESSAGE', `session:joined: ${m.ok ? 'not a volunteer' : m.reason}`);
    coordinator.joined(id, m.value.sessionId, m.value.unreached);
  });
  on('step:digest', (raw) => {
    const m = parseDigest(raw);
    const id = socket.data.volunteerId;
    if (!m.ok || id === null) return refuse('ERR_BAD_MESSAGE', `step:digest: ${m.ok ? 'not a volunteer' : m.reason}`);
    coordinator.digest(id, m.value);
  });
  on('step:logits', (raw) => {
    const m = parseLogits(raw, coordinator.vocabSize);
    const id = socket.data.volunteerId;
    if (!m.ok || id === null) return refuse('ERR_BAD_MESSAGE', `step:logits: ${m.ok ? 'not a volunteer' : m.reason}`);
    coordinator.logits(id, m.value.sessionId, m.value.step, m.value.logits, m.value.resets);
  });
  on('step:failed', (raw) => {
    const m = parseFailure(raw);
    const id = socket.data.volunteerId;
    if (!m.ok || id === null) return refuse('ERR_BAD_MESSAGE', `step:failed: ${m.ok ? 'not a volunteer' : m.reason}`);
    coordinator.failed(id, m.value);
  });
  on('chat:generate', (raw) => {
    if (socket.data.role !== 'requester') return refuse('ERR_BAD_MESSAGE', 'chat:generate: only requesters generate');
    const m = parseGenerate(raw);
    if (!m.ok) return refuse('ERR_BAD_REQUEST', `chat:generate: ${m.reason}`);
    const r = m.value;
    let release = () => {};
    let client: string | undefined;
    if (access !== undefined) {
      const admitted = access.admitKey(r.apiKey, socket.data.address);
      if (!admitted.ok) {
        const code = admitted.status === 401 ? 'ERR_UNAUTHORIZED' : 'ERR_RATE_LIMITED';
        socket.emit('chat:error', { requestId: r.requestId, code, message: admitted.message });
        return;
      }
      // The same concurrent generations per key (or address) as the HTTP API.
      const slot = access.hold(admitted.identity);
      if (!slot.ok) {
        socket.emit('chat:error', { requestId: r.requestId, code: 'ERR_RATE_LIMITED', message: slot.message });
        return;
      }
      release = slot.release;
      if (access.limitsClients) client = admitted.identity;
    }
    const sampling = { temperature: r.temperature, topK: 0, topP: r.topP, seed: r.seed };
    // A requester that goes away (the chat page closed) cancels its generation.
    const gone = new AbortController();
    const onGone = () => gone.abort();
    socket.once('disconnect', onGone);
    coordinator
      .complete(
        { prompt: r.prompt, maxTokens: r.maxTokens, sampling, signal: gone.signal, ...(client === undefined ? {} : { client }) },
        ({ logits: _, logSumExp: __, ...u }) => socket.emit('chat:token', { requestId: r.requestId, ...u }),
      )
      .finally(() => {
        socket.off('disconnect', onGone);
        release();
      })
      .then((c) => socket.emit('chat:done', { requestId: r.requestId, finishReason: c.finishReason, tokens: c.tokens, text: c.text }))
      .catch((e: unknown) => {
        // The same mapping as the HTTP API: a GenerationError keeps its code, anything else is ERR_INTERNAL.
        const { code, message } = wireErrorOf(e);
        if (code === 'ERR_INTERNAL') log(`chat ${r.requestId} failed: ${(e as Error).message}`);
        socket.emit('chat:error', { requestId: r.requestId, code, message });
      });
  });
  socket.on('disconnect', () => {
    const id = socket.data.volunteerId;
    if (id !== null) coordinator.left(id);
  });
}
