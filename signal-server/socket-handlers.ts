import { randomUUID } from 'node:crypto';
import type { Server, Socket } from 'socket.io';
import type { WireErrorCode } from '../shared/protocol/errors.js';
import type { ClientToServerEvents, ServerToClientEvents } from '../shared/protocol/messages.js';
import { parseHandshake, parseHello, parseReady, parseSignal } from '../shared/protocol/validate.js';
import { Links } from './coordinator/links.js';
import { Registry } from './coordinator/registry.js';

interface SocketData {
  role: 'volunteer' | 'requester';
  volunteerId: string | null;
}

export type SwarmServer = Server<ClientToServerEvents, ServerToClientEvents, Record<string, never>, SocketData>;
type SwarmSocket = Socket<ClientToServerEvents, ServerToClientEvents, Record<string, never>, SocketData>;

const KNOWN_EVENTS = new Set<string>(['volunteer:hello', 'volunteer:ready', 'signal']);

export interface ServedModelInfo {
  readonly modelId: string;
  readonly numStages: number;
  readonly baseUrl: string;
}

/**
 * The coordinator's Socket.IO side: the handshake, volunteer registration and
 * stage assignment, and signalling relayed only between linked peers. Every
 * inbound event is validated; a bad one is dropped with a logged reason and
 * the sender is told the code.
 */
export class SwarmCoordinator {
  readonly registry: Registry;
  readonly links = new Links();
  private readonly sockets = new Map<string, SwarmSocket>();

  constructor(
    io: SwarmServer,
    private readonly model: ServedModelInfo,
    redundancy: number,
    private readonly log: (line: string) => void,
  ) {
    this.registry = new Registry(model.modelId, model.numStages, redundancy);
    io.use((socket, next) => {
      const auth = parseHandshake(socket.handshake.auth);
      if (!auth.ok) {
        const code: WireErrorCode = /protocol/.test(auth.reason) ? 'ERR_PROTOCOL_VERSION' : 'ERR_BAD_HANDSHAKE';
        this.log(`refused connection from ${socket.handshake.address}: ${auth.reason}`);
        next(Object.assign(new Error(`${code}: ${auth.reason}`), { data: { code, message: auth.reason } }));
        return;
      }
      socket.data.role = auth.value.role;
      socket.data.volunteerId = null;
      next();
    });
    io.on('connection', (socket) => this.onConnection(socket));
  }

  private refuse(socket: SwarmSocket, code: WireErrorCode, message: string): void {
    this.log(`${socket.data.volunteerId ?? socket.id}: ${code} ${message}`);
    socket.emit('server:error', { code, message });
  }

  private onConnection(socket: SwarmSocket): void {
    socket.onAny((event: string) => {
      if (!KNOWN_EVENTS.has(event)) this.refuse(socket, 'ERR_BAD_MESSAGE', `unknown event ${JSON.stringify(event).slice(0, 80)}`);
    });
    socket.on('volunteer:hello', (raw: unknown) => {
      const m = parseHello(raw);
      if (!m.ok) return this.refuse(socket, 'ERR_BAD_MESSAGE', `hello: ${m.reason}`);
      if (socket.data.role !== 'volunteer') return this.refuse(socket, 'ERR_BAD_MESSAGE', 'hello: only volunteers say hello');
      if (socket.data.volunteerId !== null) return this.refuse(socket, 'ERR_BAD_MESSAGE', 'hello: already registered');
      // The id is the server's, never the client's: nobody can claim another volunteer's id.
      const id = randomUUID();
      socket.data.volunteerId = id;
      this.sockets.set(id, socket);
      const stage = this.registry.join(id, m.value.backend, m.value.adapter);
      socket.emit('volunteer:welcome', { volunteerId: id });
      socket.emit('volunteer:assign', { modelId: this.model.modelId, stage, baseUrl: this.model.baseUrl });
      this.log(
        `volunteer ${id} (${m.value.backend}) joined: stage ${stage}; replicas per stage ${this.registry.replicasPerStage().join('/')}`,
      );
    });
    socket.on('volunteer:ready', (raw: unknown) => {
      const id = socket.data.volunteerId;
      if (id === null) return this.refuse(socket, 'ERR_NOT_ASSIGNED', 'ready: say hello first');
      const m = parseReady(raw);
      if (!m.ok) return this.refuse(socket, 'ERR_BAD_MESSAGE', `ready: ${m.reason}`);
      if (m.value.modelId !== this.model.modelId || !this.registry.markReady(id, m.value.stage, m.value.stepMs)) {
        return this.refuse(socket, 'ERR_NOT_ASSIGNED', `ready: ${m.value.modelId} stage ${m.value.stage} is not the stage assigned`);
      }
    });
    socket.on('signal', (raw: unknown) => {
      const from = socket.data.volunteerId;
      if (from === null) return this.refuse(socket, 'ERR_NOT_LINKED', 'signal: say hello first');
      const m = parseSignal(raw);
      if (!m.ok) return this.refuse(socket, 'ERR_BAD_MESSAGE', `signal: ${m.reason}`);
      const target = this.sockets.get(m.value.to);
      if (target === undefined || !this.links.linked(from, m.value.to))
        return this.refuse(socket, 'ERR_NOT_LINKED', `signal: not linked to ${m.value.to}`);
      target.emit('signal', { from, data: m.value.data });
    });
    socket.on('disconnect', () => {
      const id = socket.data.volunteerId;
      if (id === null) return;
      this.sockets.delete(id);
      this.links.drop(id);
      for (const move of this.registry.leave(id)) {
        this.sockets
          .get(move.volunteer)
          ?.emit('volunteer:assign', { modelId: this.model.modelId, stage: move.to, baseUrl: this.model.baseUrl });
        this.log(`volunteer ${move.volunteer} moved from stage ${move.from} to ${move.to}`);
      }
      this.log(`volunteer ${id} left; replicas per stage ${this.registry.replicasPerStage().join('/')}`);
    });
  }
}
