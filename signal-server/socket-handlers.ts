import { randomUUID } from 'node:crypto';
import type { Server, Socket } from 'socket.io';
import type { StageManifest } from '../shared/model/manifest.js';
import type { SamplingParams } from '../shared/model/sampling.js';
import type { ChatMessage, Tokenizer } from '../shared/model/tokenizer.js';
import type { WireErrorCode } from '../shared/protocol/errors.js';
import {
  CLIENT_EVENTS,
  type ClientToServerEvents,
  type ServerToClientEvents,
  type TokenEvent,
  type VolunteerView,
} from '../shared/protocol/messages.js';
import {
  parseDigest,
  parseFailure,
  parseGenerate,
  parseHandshake,
  parseHello,
  parseLogits,
  parseReady,
  parseSessionRef,
  parseSignal,
} from '../shared/protocol/validate.js';
import { majority } from '../shared/vote/quorum.js';
import type { AccessControl } from './api/access.js';
import { Audit, type AuditCounts } from './coordinator/audit.js';
import { GenerationError, GenerationSession, type SessionTimeouts } from './coordinator/generation.js';
import { Links } from './coordinator/links.js';
import type { SwarmObserver } from './coordinator/observer.js';
import { Registry } from './coordinator/registry.js';
import { BanList, reputation, shouldEvict } from './coordinator/reputation.js';
import { TextStream } from './coordinator/text-stream.js';

interface SocketData {
  role: 'volunteer' | 'requester';
  volunteerId: string | null;
}

export type SwarmServer = Server<ClientToServerEvents, ServerToClientEvents, Record<string, never>, SocketData>;
type SwarmSocket = Socket<ClientToServerEvents, ServerToClientEvents, Record<string, never>, SocketData>;

const KNOWN_EVENTS = new Set<string>(CLIENT_EVENTS);

export interface ServedModelInfo {
  readonly modelId: string;
  readonly numStages: number;
  readonly baseUrl: string;
  readonly manifest: StageManifest;
  readonly tokenizer: Tokenizer;
}

export interface CompletionRequest {
  readonly prompt: string;
  readonly maxTokens: number;
  readonly sampling: SamplingParams;
  /** Stop sequences: the text ends before the first one (at most 4, as OpenAI allows). */
  readonly stop?: readonly string[];
  /** Aborting ends the generation with ERR_CANCELLED (the client went away). */
  readonly signal?: AbortSignal;
}

/** One accepted token as the coordinator streams it: the chat event without its request id, plus the agreed logits it was sampled from. */
export type TokenUpdate = Omit<TokenEvent, 'requestId'> & {
  /** The agreed logits of the last position (for log-probabilities); never sent to the chat page. */
  readonly logits: Float32Array;
};

export interface Completion {
  readonly promptTokens: number[];
  readonly tokens: number[];
  readonly text: string;
  readonly finishReason: 'stop' | 'length';
  readonly route: readonly (readonly string[])[];
}

export interface CoordinatorOptions {
  readonly redundancy: number;
  /** Test and demo servers accept volunteers that inject faults; production refuses them. */
  readonly allowFaults: boolean;
  /** How long a request waits for every stage to have a ready replica. */
  readonly routeWaitMs: number;
  readonly timeouts: SessionTimeouts;
  /** Keys and rate limits for generations asked over Socket.IO (the chat page), as for the HTTP API. */
  readonly access?: AccessControl;
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
  readonly audit = new Audit((id, counts) => this.judge(id, counts));
  private readonly bans = new BanList();
  private readonly clientKeys = new Map<string, string>();
  private readonly sockets = new Map<string, SwarmSocket>();
  private readonly sessions = new Map<number, GenerationSession>();
  /** Recently finished sessions: late reports from stragglers for them are expected, not errors. */
  private readonly finished = new Map<number, GenerationSession>();
  private nextSessionId = 1;
  private readonly observers: SwarmObserver[] = [];

  constructor(
    private readonly io: SwarmServer,
    private readonly model: ServedModelInfo,
    private readonly options: CoordinatorOptions,
    private readonly log: (line: string) => void,
  ) {
    this.registry = new Registry(model.modelId, model.numStages, options.redundancy);
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
      if (m.value.fault !== null && !this.options.allowFaults) {
        this.refuse(socket, 'ERR_FAULTS_REFUSED', `hello: this server does not accept injected faults (${m.value.fault})`);
        socket.disconnect(true);
        return;
      }
      if (m.value.clientKey !== null && this.bans.banned(m.value.clientKey)) {
        this.refuse(socket, 'ERR_BANNED', 'hello: this volunteer was evicted for disagreeing with the majority; try again later');
        socket.disconnect(true);
        return;
      }
      // The id is the server's, never the client's: nobody can claim another volunteer's id.
      const id = randomUUID();
      socket.data.volunteerId = id;
      this.sockets.set(id, socket);
      if (m.value.clientKey !== null) this.clientKeys.set(id, m.value.clientKey);
      const stage = this.registry.join(id, m.value.backend, m.value.adapter);
      socket.emit('volunteer:welcome', { volunteerId: id });
      socket.emit('volunteer:assign', { modelId: this.model.modelId, stage, baseUrl: this.model.baseUrl });
      this.log(
        `volunteer ${id} (${m.value.backend}${m.value.fault === null ? '' : `, fault ${m.value.fault}`}) joined: stage ${stage}; replicas per stage ${this.registry.replicasPerStage().join('/')}`,
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
    socket.on('session:joined', (raw: unknown) => {
      const m = parseSessionRef(raw);
      const id = socket.data.volunteerId;
      if (!m.ok || id === null) return this.refuse(socket, 'ERR_BAD_MESSAGE', `session:joined: ${m.ok ? 'not a volunteer' : m.reason}`);
      this.member(socket, id, m.value.sessionId)?.onJoined(id);
    });
    socket.on('step:digest', (raw: unknown) => {
      const m = parseDigest(raw);
      const id = socket.data.volunteerId;
      if (!m.ok || id === null) return this.refuse(socket, 'ERR_BAD_MESSAGE', `step:digest: ${m.ok ? 'not a volunteer' : m.reason}`);
      const session = this.member(socket, id, m.value.sessionId);
      if (session !== undefined && session.stageOf(id) !== m.value.stage)
        return this.refuse(socket, 'ERR_NOT_ASSIGNED', `step:digest: stage ${m.value.stage} is not yours`);
      session?.onDigest(id, m.value.step, [...m.value.digest], m.value.computeMs);
    });
    socket.on('step:logits', (raw: unknown) => {
      const m = parseLogits(raw, this.model.manifest.model.vocabSize);
      const id = socket.data.volunteerId;
      if (!m.ok || id === null) return this.refuse(socket, 'ERR_BAD_MESSAGE', `step:logits: ${m.ok ? 'not a volunteer' : m.reason}`);
      this.member(socket, id, m.value.sessionId)?.onLogits(id, m.value.step, m.value.logits);
    });
    socket.on('step:failed', (raw: unknown) => {
      const m = parseFailure(raw);
      const id = socket.data.volunteerId;
      if (!m.ok || id === null) return this.refuse(socket, 'ERR_BAD_MESSAGE', `step:failed: ${m.ok ? 'not a volunteer' : m.reason}`);
      this.log(`volunteer ${id} failed step ${m.value.step} of session ${m.value.sessionId}: ${m.value.code} ${m.value.message}`);
      this.member(socket, id, m.value.sessionId)?.onFailure(id, m.value.step, m.value.code, m.value.message);
    });
    socket.on('chat:generate', (raw: unknown) => {
      if (socket.data.role !== 'requester') return this.refuse(socket, 'ERR_BAD_MESSAGE', 'chat:generate: only requesters generate');
      const m = parseGenerate(raw);
      if (!m.ok) return this.refuse(socket, 'ERR_BAD_REQUEST', `chat:generate: ${m.reason}`);
      const r = m.value;
      if (this.options.access !== undefined) {
        const admitted = this.options.access.admitKey(r.apiKey, socket.handshake.address);
        if (!admitted.ok) {
          const code = admitted.status === 401 ? 'ERR_UNAUTHORIZED' : 'ERR_RATE_LIMITED';
          socket.emit('chat:error', { requestId: r.requestId, code, message: admitted.message });
          return;
        }
      }
      const sampling = { temperature: r.temperature, topK: 0, topP: r.topP, seed: r.seed };
      // A requester that goes away (the chat page closed) cancels its generation.
      const gone = new AbortController();
      const onGone = () => gone.abort();
      socket.once('disconnect', onGone);
      this.complete({ prompt: r.prompt, maxTokens: r.maxTokens, sampling, signal: gone.signal }, ({ logits: _, ...u }) =>
        socket.emit('chat:token', { requestId: r.requestId, ...u }),
      )
        .finally(() => socket.off('disconnect', onGone))
        .then((c) => socket.emit('chat:done', { requestId: r.requestId, finishReason: c.finishReason, tokens: c.tokens, text: c.text }))
        .catch((e: unknown) => {
          const code = e instanceof GenerationError ? e.code : 'ERR_BAD_REQUEST';
          socket.emit('chat:error', { requestId: r.requestId, code, message: (e as Error).message });
        });
    });
    socket.on('disconnect', () => {
      const id = socket.data.volunteerId;
      if (id === null) return;
      this.sockets.delete(id);
      this.clientKeys.delete(id);
      this.links.drop(id);
      for (const s of this.sessions.values()) this.failOver(s, id);
      // Its record goes with it: a volunteer that comes back is a newcomer (or refused, if banned).
      this.audit.forget(id);
      for (const move of this.registry.leave(id)) {
        this.sockets
          .get(move.volunteer)
          ?.emit('volunteer:assign', { modelId: this.model.modelId, stage: move.to, baseUrl: this.model.baseUrl });
        this.log(`volunteer ${move.volunteer} moved from stage ${move.from} to ${move.to}`);
      }
      this.log(`volunteer ${id} left; replicas per stage ${this.registry.replicasPerStage().join('/')}`);
      this.io.emit('swarm:status', this.status());
    });
  }

  /** Tells a volunteer its score; evicts (and bans its key) after repeated disagreement. */
  private judge(id: string, counts: AuditCounts): void {
    const socket = this.sockets.get(id);
    if (socket === undefined) return;
    socket.emit('volunteer:score', { ...counts, reputation: reputation(counts) });
    if (!shouldEvict(counts)) return;
    const key = this.clientKeys.get(id);
    if (key !== undefined) this.bans.ban(key);
    this.log(`volunteer ${id} evicted: ${counts.disagreed} disagreements, ${counts.agreed} agreements`);
    this.refuse(socket, 'ERR_EVICTED', `evicted after ${counts.disagreed} outputs that disagreed with the majority`);
    // The disconnect handler fails its sessions over and re-balances the stages.
    queueMicrotask(() => socket.disconnect(true));
  }

  /**
   * A replica of a running session left: a ready volunteer of the same stage
   * that is not in the route takes its place (rebuilding its KV cache from the
   * agreed inputs); with none, the step goes on with the replicas that remain.
   */
  private failOver(session: GenerationSession, left: string): void {
    const stage = session.stageOf(left);
    if (stage === undefined) return;
    const inRoute = new Set(session.route.flat());
    const spare = this.registry.readyReplicas(stage).find((v) => !inRoute.has(v.id));
    if (spare === undefined) {
      session.onLeft(left);
      this.log(
        `session ${session.sessionId}: replica ${left} of stage ${stage} left; no spare, going on with ${(session.route[stage]?.length ?? 1) - 1} replicas`,
      );
      return;
    }
    for (const p of session.route[stage - 1] ?? []) this.links.link(p, spare.id);
    for (const n of session.route[stage + 1] ?? []) this.links.link(spare.id, n);
    session.replace(left, spare.id);
    this.log(`session ${session.sessionId}: replica ${left} of stage ${stage} left; ${spare.id} takes its place`);
  }

  /** The session a message names, if the sender is one of its replicas; otherwise the sender is told. */
  private member(socket: SwarmSocket, volunteer: string, sessionId: number): GenerationSession | undefined {
    const s = this.sessions.get(sessionId) ?? this.finished.get(sessionId);
    if (s === undefined || s.stageOf(volunteer) === undefined) {
      this.refuse(socket, 'ERR_UNKNOWN_SESSION', `session ${sessionId} is not one of yours`);
      return undefined;
    }
    return s;
  }

  /** Up to `redundancy` ready replicas per stage, waiting up to routeWaitMs for each stage to have one. */
  private async pickRoute(): Promise<string[][]> {
    const deadline = Date.now() + this.options.routeWaitMs;
    for (;;) {
      const route = Array.from({ length: this.model.numStages }, (_, s) =>
        this.registry
          .readyReplicas(s)
          .slice(0, this.options.redundancy)
          .map((v) => v.id),
      );
      const lacking = route.findIndex((ids) => ids.length === 0);
      if (lacking < 0) return route;
      if (Date.now() >= deadline) {
        const counts = this.registry.replicasPerStage();
        throw new GenerationError(
          'ERR_NO_ROUTE',
          `stage ${lacking} of ${this.model.modelId} has no ready volunteer (${counts[lacking]} assigned, ${this.options.redundancy} wanted); waited ${this.options.routeWaitMs} ms`,
        );
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  private closing = false;

  /** Fails the generations in flight with a clear error and refuses new ones: the server is going away. */
  shutdown(): void {
    this.closing = true;
    const e = new GenerationError('ERR_SHUTTING_DOWN', 'the server is shutting down; send the request again once it is back');
    for (const s of this.sessions.values()) s.abort(e);
  }

  /** Adds an observer of tokens and generations (metrics, the dashboard). */
  observe(o: SwarmObserver): void {
    this.observers.push(o);
  }

  /** Generations running now. */
  get activeSessions(): number {
    return this.sessions.size;
  }

  /** The prompt for a chat, by the model's chat template. */
  chatPrompt(messages: readonly ChatMessage[]): string {
    return this.model.tokenizer.chatPrompt(messages);
  }

  /** Generates through the swarm; `onToken` receives each verified token as it is accepted. */
  async complete(req: CompletionRequest, onToken?: (u: TokenUpdate) => void): Promise<Completion> {
    try {
      const c = await this.generate(req, onToken);
      for (const o of this.observers) o.onGeneration?.('ok');
      return c;
    } catch (e) {
      for (const o of this.observers) o.onGeneration?.(e instanceof GenerationError ? e.code : 'ERR_INTERNAL');
      throw e;
    }
  }

  private async generate(req: CompletionRequest, onToken?: (u: TokenUpdate) => void): Promise<Completion> {
    if (this.closing) throw new GenerationError('ERR_SHUTTING_DOWN', 'the server is shutting down');
    const { tokenizer, manifest } = this.model;
    const promptTokens = tokenizer.encode(req.prompt);
    if (promptTokens.length === 0) throw new GenerationError('ERR_BAD_REQUEST', 'the prompt has no tokens');
    if (promptTokens.length + req.maxTokens > manifest.model.maxPositions) {
      throw new GenerationError(
        'ERR_BAD_REQUEST',
        `prompt (${promptTokens.length} tokens) + max_tokens (${req.maxTokens}) exceeds the model's ${manifest.model.maxPositions} positions`,
      );
    }
    const route = await this.pickRoute();
    const sessionId = this.nextSessionId++;
    for (let s = 0; s + 1 < route.length; s++)
      for (const a of route[s] as string[]) for (const b of route[s + 1] as string[]) this.links.link(a, b);
    const session = new GenerationSession(
      sessionId,
      route,
      manifest,
      {
        open: (v, m) => this.sockets.get(v)?.emit('session:open', m),
        update: (v, m) => this.sockets.get(v)?.emit('session:update', m),
        input: (v, m) => this.sockets.get(v)?.emit('step:input', m),
        close: (v, id) => this.sockets.get(v)?.emit('session:close', { sessionId: id }),
      },
      this.options.timeouts,
      this.audit,
      {
        spares: (stage, exclude) =>
          this.registry
            .readyReplicas(stage)
            .filter((v) => !exclude.has(v.id))
            .sort((a, b) => reputation(this.audit.get(b.id)) - reputation(this.audit.get(a.id)))
            .map((v) => v.id),
        link: (stage, id) => {
          for (const p of session.route[stage - 1] ?? []) this.links.link(p, id);
          for (const n of session.route[stage + 1] ?? []) this.links.link(id, n);
        },
        log: (line) => this.log(line),
      },
    );
    this.sessions.set(sessionId, session);
    const cancel = () => session.abort(new GenerationError('ERR_CANCELLED', 'the request was cancelled by its client'));
    if (req.signal?.aborted === true) cancel();
    req.signal?.addEventListener('abort', cancel, { once: true });
    const stream = new TextStream((ids) => tokenizer.decode(ids), req.stop ?? []);
    const sofar: number[] = [];
    try {
      const r = await session.run(promptTokens, req.maxTokens, req.sampling, (token, rec) => {
        sofar.push(token);
        const piece = stream.push(sofar);
        onToken?.({
          index: sofar.length - 1,
          token,
          text: piece,
          votes: rec.votes,
          verified: this.options.redundancy >= 2 && rec.votes.every((v) => v.agreed >= majority(this.options.redundancy)),
          redundancy: this.options.redundancy,
          logits: rec.logits,
          route: session.route.map((ids) => [...ids]),
          stepMs: rec.ms,
          computeMs: rec.computeMs,
        });
        for (const o of this.observers) o.onToken?.(rec.ms, rec.votes);
        return stream.stopped;
      });
      stream.finish(r.tokens);
      const text = stream.text;
      this.log(`session ${sessionId}: ${r.tokens.length} tokens, ${r.finishReason}`);
      return { promptTokens, tokens: r.tokens, text, finishReason: r.finishReason, route: session.route.map((ids) => [...ids]) };
    } finally {
      req.signal?.removeEventListener('abort', cancel);
      this.sessions.delete(sessionId);
      this.finished.set(sessionId, session);
      if (this.finished.size > 64) this.finished.delete(this.finished.keys().next().value as number);
    }
  }

  /** Volunteers online and replicas per stage, for the landing page. */
  status(): { volunteers: number; replicasPerStage: number[] } {
    return { volunteers: this.registry.size, replicasPerStage: this.registry.replicasPerStage() };
  }

  /** Every volunteer with its stage, backend, state and audit counts. */
  volunteers(): VolunteerView[] {
    const busy = new Set<string>();
    for (const s of this.sessions.values()) for (const id of s.route.flat()) busy.add(id);
    return this.registry.all().map((v) => {
      const counts = this.audit.get(v.id);
      const state = !v.ready ? 'loading' : busy.has(v.id) ? 'busy' : 'ready';
      return {
        id: v.id,
        stage: v.stage,
        backend: v.backend,
        adapter: v.adapter,
        state,
        ready: v.ready,
        ...counts,
        reputation: reputation(counts),
      };
    });
  }

  get modelInfo(): { modelId: string; stages: number; redundancy: number } {
    return { modelId: this.model.modelId, stages: this.model.numStages, redundancy: this.options.redundancy };
  }
}
