import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Server } from 'socket.io';
import type { StageManifest } from '../shared/model/manifest.js';
import { Tokenizer } from '../shared/model/tokenizer.js';
import { AccessControl } from './api/access.js';
import { admitOrRefuse, handleOpenAiGeneration, sendApiError } from './api/completions.js';
import { EventBudget, type EventBudgetOptions, SOCKET_EVENT_BUDGET } from './coordinator/event-budget.js';
import { DashboardFeed } from './dashboard-feed.js';
import { safeJoin, sendFile, sendJson, serveWebApp } from './http/static-files.js';
import { type Logger, silentLogger } from './log.js';
import { LogLimiter, REFUSAL_LOG_LIMIT } from './log-limiter.js';
import { SwarmMetrics } from './metrics.js';
import { SwarmCoordinator, type SwarmServer } from './socket-handlers.js';
import { StatusFeed } from './status-feed.js';

/** A model's built stages, served to volunteers under /models/<modelId>/<key>/. */
export interface ServedStages {
  readonly manifest: StageManifest;
  /** The stage directory (manifest.json + the files it names). */
  readonly dir: string;
  /** The partition's key, e.g. "r0-2_2-4_4-6". */
  readonly key: string;
}

export interface SignalServerOptions {
  /** 0 = any free port (tests). */
  readonly port: number;
  readonly host: string;
  /** The built web app (vite build's outDir), or null to serve no pages. */
  readonly webRoot: string | null;
  readonly models: readonly ServedStages[];
  /** Replicas per stage the coordinator aims for (default 3). */
  readonly redundancy?: number;
  /** Accept volunteers that inject faults: test and demo servers only (default false). */
  readonly allowFaults?: boolean;
  /** How long a request waits for a ready replica of every stage (default 30 s). */
  readonly routeWaitMs?: number;
  /** How long a session waits for its replicas' data channels (default 30 s). */
  readonly joinTimeoutMs?: number;
  /** How long one step waits for a majority of the last stage (default 30 s). */
  readonly stepTimeoutMs?: number;
  /** Accepted `Authorization: Bearer` keys for /v1; empty or absent = the API is open. */
  readonly apiKeys?: readonly string[];
  /** API requests per minute per key (or per client address when open); 0 = no limit (default 60). */
  readonly ratePerMinute?: number;
  /** Largest API request body (default 64 KiB). */
  readonly maxBodyBytes?: number;
  /** Structured logs (pino); silent by default. */
  readonly logger?: Logger;
  /** Inbound Socket.IO events per socket (default SOCKET_EVENT_BUDGET: 200/s, bursts of 400). */
  readonly socketEventBudget?: EventBudgetOptions;
}

const API_ROUTES = ['/v1/models', '/v1/completions', '/v1/chat/completions'];

/** Default largest API request body. */
export const DEFAULT_MAX_BODY_BYTES = 64 * 1024;

/** Largest Socket.IO message accepted from a client. */
export const MAX_SOCKET_MESSAGE_BYTES = 1024 * 1024;

/** How long the connection of a socket cut off for flooding stays, unread, for ERR_RATE_LIMITED to reach it. */
const RATE_LIMITED_LINGER_MS = 1_000;

export interface SignalServer {
  /** Resolves once the server listens. */
  readonly ready: Promise<void>;
  address(): { host: string; port: number; url: string };
  close(): Promise<void>;
  /** The coordinator of the first served model (null when none is served). */
  readonly coordinator: SwarmCoordinator | null;
}

/** The HTTP listing of served models, as the pages read it. */
export interface ModelListing {
  readonly modelId: string;
  readonly stages: number;
  readonly baseUrl: string;
}

function tokenizerOf(m: ServedStages): Tokenizer {
  const read = (file: string) => readFileSync(join(m.dir, file), 'utf8');
  return Tokenizer.fromJson(
    join(m.dir, m.manifest.tokenizer.file),
    read(m.manifest.tokenizer.file),
    m.manifest.tokenizerConfig === null ? null : read(m.manifest.tokenizerConfig.file),
  );
}

/**
 * The sender a coordinator log line is about, when it reports one of that
 * sender's messages refused ("<id>: ERR_… …") or failed ("volunteer <id> failed
 * step …"): such lines are limited per sender. Null for every other line.
 */
function senderOf(line: string): string | null {
  return /^(\S+): ERR_[A-Z_]+ /.exec(line)?.[1] ?? /^volunteer (\S+) failed step /.exec(line)?.[1] ?? null;
}

/**
 * The webswarm server: the web app, the model files and the API on one port.
 * A factory: it reads no environment and listens where it is told.
 */
export function createSignalServer(opts: SignalServerOptions): SignalServer {
  const logger = opts.logger ?? silentLogger;
  const log = (line: string) => logger.info(line);
  const startedAt = Math.floor(Date.now() / 1000);
  const listings: ModelListing[] = opts.models.map((m) => ({
    modelId: m.manifest.modelId,
    stages: m.manifest.stages.length,
    baseUrl: `/models/${encodeURIComponent(m.manifest.modelId)}/${m.key}`,
  }));
  // Only files that a manifest names (and the manifest itself) are served from a stage directory.
  const modelFiles = new Map<string, string>();
  for (const [i, m] of opts.models.entries()) {
    const base = listings[i]?.baseUrl as string;
    const names = ['manifest.json', m.manifest.tokenizer.file, ...m.manifest.stages.map((s) => s.file)];
    if (m.manifest.tokenizerConfig !== null) names.push(m.manifest.tokenizerConfig.file);
    for (const name of names) {
      const path = safeJoin(m.dir, name);
      if (path !== null) modelFiles.set(`${base}/${name}`, path);
    }
  }

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname.startsWith('/v1/')) {
      handleApi(req, res, url.pathname);
      return;
    }
    if (url.pathname === '/metrics' && (req.method === 'GET' || req.method === 'HEAD')) {
      metrics.registry.metrics().then(
        (text) => {
          res.writeHead(200, { 'content-type': metrics.registry.contentType, 'cache-control': 'no-cache' });
          res.end(text);
        },
        (e: unknown) => sendJson(res, 500, { error: { code: 'ERR_INTERNAL', message: `metrics failed: ${(e as Error).message}` } }),
      );
      return;
    }
    if (url.pathname === '/api/swarm') {
      sendJson(
        res,
        200,
        coordinator === null
          ? { volunteers: 0, replicasPerStage: [], list: [], apiKeyRequired: access.requiresKey }
          : { ...coordinator.status(), list: coordinator.volunteers(), apiKeyRequired: access.requiresKey },
      );
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      sendJson(res, 405, { error: { code: 'ERR_METHOD', message: `${req.method} is not allowed on ${url.pathname}` } });
      return;
    }
    if (url.pathname === '/healthz') {
      sendJson(res, 200, { status: 'ok', models: listings.length });
      return;
    }
    if (url.pathname === '/api/models') {
      sendJson(res, 200, listings);
      return;
    }
    if (url.pathname.startsWith('/models/')) {
      const path = modelFiles.get(url.pathname);
      // Stage files are content-addressed by the manifest's sha256: safe to cache; the manifest is not.
      if (path !== undefined && sendFile(res, path, url.pathname.endsWith('/manifest.json') ? 'no-cache' : 'public, max-age=3600')) return;
      log(`404 ${url.pathname}`);
      sendJson(res, 404, { error: { code: 'ERR_NOT_FOUND', message: `${url.pathname} is not a served model file` } });
      return;
    }
    // embed.js is loaded by other sites' pages: it must be loadable cross-origin.
    if (url.pathname === '/embed.js' && opts.webRoot !== null) {
      if (sendFile(res, join(opts.webRoot, 'embed.js'), 'no-cache', { 'cross-origin-resource-policy': 'cross-origin' })) return;
    }
    if (opts.webRoot !== null && serveWebApp(res, opts.webRoot, url.pathname)) return;
    log(`404 ${url.pathname}`);
    sendJson(res, 404, { error: { code: 'ERR_NOT_FOUND', message: `${url.pathname} not found` } });
  };

  // The OpenAI-compatible API: CORS-open (its callers are other sites and tools), keys and rate limits in front.
  const handleApi = (req: IncomingMessage, res: ServerResponse, path: string): void => {
    res.setHeader('access-control-allow-origin', '*');
    if (req.method === 'OPTIONS') {
      res.writeHead(204, {
        'access-control-allow-methods': 'GET, POST, OPTIONS',
        'access-control-allow-headers':
          'authorization, content-type, openai-organization, openai-project, x-stainless-os, x-stainless-lang',
        'access-control-max-age': '600',
      });
      res.end();
      return;
    }
    const t0 = performance.now();
    const known = API_ROUTES.includes(path);
    res.once('finish', () => {
      // Only known routes become labels: a label per unknown path would let anyone grow the metrics without bound.
      metrics.httpRequests.inc({ route: known ? path : 'other', status: String(res.statusCode) });
      logger.info({ method: req.method, path, status: res.statusCode, ms: Math.round(performance.now() - t0) }, 'api request');
    });
    if (path === '/v1/completions' || path === '/v1/chat/completions') {
      void handleOpenAiGeneration(req, res, path === '/v1/completions' ? 'completion' : 'chat', api);
      return;
    }
    if (path === '/v1/models' && (req.method === 'GET' || req.method === 'HEAD')) {
      if (!admitOrRefuse(req, res, access)) return;
      // OpenAI's model list, so that existing clients can discover what is served.
      sendJson(res, 200, {
        object: 'list',
        data: listings.map((m) => ({ id: m.modelId, object: 'model', created: startedAt, owned_by: 'webswarm' })),
      });
      return;
    }
    sendApiError(
      res,
      known ? 405 : 404,
      'invalid_request_error',
      known ? 'method_not_allowed' : 'not_found',
      known ? `${req.method} is not allowed on ${path}` : `${path} is not an endpoint of this server`,
    );
  };

  const server = createServer((req, res) => {
    try {
      handle(req, res);
    } catch (e) {
      log(`error serving ${req.url}: ${(e as Error).message}`);
      if (!res.headersSent) sendJson(res, 500, { error: { code: 'ERR_INTERNAL', message: 'internal error' } });
      else res.destroy();
    }
  });
  const io: SwarmServer = new Server(server, { maxHttpBufferSize: MAX_SOCKET_MESSAGE_BYTES, serveClient: false });
  const access = new AccessControl({ apiKeys: opts.apiKeys ?? [], ratePerMinute: opts.ratePerMinute ?? 60 });
  // One sender's refused messages write at most 10 lines per 10 s, then one "N more suppressed".
  const refusals = new LogLimiter(REFUSAL_LOG_LIMIT, log);
  const coordinatorLog = (line: string) => {
    const sender = senderOf(line);
    if (sender === null) log(line);
    else refusals.line(sender, line);
  };
  const first = listings[0];
  const firstModel = opts.models[0];
  const coordinator =
    first === undefined || firstModel === undefined
      ? null
      : new SwarmCoordinator(
          io,
          {
            modelId: first.modelId,
            numStages: first.stages,
            baseUrl: first.baseUrl,
            manifest: firstModel.manifest,
            tokenizer: tokenizerOf(firstModel),
          },
          {
            redundancy: opts.redundancy ?? 3,
            allowFaults: opts.allowFaults ?? false,
            routeWaitMs: opts.routeWaitMs ?? 30_000,
            timeouts: { joinMs: opts.joinTimeoutMs ?? 30_000, stepMs: opts.stepTimeoutMs ?? 30_000 },
            access,
          },
          coordinatorLog,
        );
  const api = {
    coordinator,
    modelIds: listings.map((m) => m.modelId),
    access,
    maxBodyBytes: opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES,
    log,
  };
  const metrics = new SwarmMetrics(coordinator);
  const feed = coordinator === null ? null : new DashboardFeed(io, coordinator);
  const statusFeed = new StatusFeed(io, () => coordinator?.status() ?? { volunteers: 0, replicasPerStage: [] });
  // The coordinator announces a volunteer leaving with io.emit('swarm:status', …) to every socket, volunteers
  // included. Until it calls statusFeed.changed() itself, that broadcast is turned into a change for the feed.
  const broadcast = io.emit.bind(io) as (event: string, ...args: unknown[]) => boolean;
  io.emit = ((event: string, ...args: unknown[]): boolean => {
    if (event !== 'swarm:status') return broadcast(event, ...args);
    statusFeed.changed();
    return true;
  }) as unknown as typeof io.emit;
  const budgetOptions = opts.socketEventBudget ?? SOCKET_EVENT_BUDGET;
  io.on('connection', (socket) => {
    // Every inbound event spends from the socket's budget; over it the event is dropped unanswered,
    // and a flood (far over it) is told ERR_RATE_LIMITED once and disconnected.
    const budget = new EventBudget(budgetOptions);
    socket.use((_event, next) => {
      const verdict = budget.take();
      if (verdict === 'serve') return next();
      metrics.socketEventsDropped.inc();
      if (verdict === 'drop' || !socket.connected) return;
      metrics.socketsRateLimited.inc();
      const message = `more than ${budgetOptions.ratePerS} events a second (bursts of ${budgetOptions.burst}); ${budget.droppedTotal} dropped; disconnected`;
      log(`${socket.data.volunteerId ?? socket.id} (${socket.handshake.address}): ERR_RATE_LIMITED ${message}`);
      socket.emit('server:error', { code: 'ERR_RATE_LIMITED', message });
      socket.disconnect(true);
      // Read none of what it still has in flight (a flood is thousands of frames), and let the connection go
      // once the answer is out: the socket of a WebSocket connection is that of its upgrade request.
      if (socket.conn.transport.name !== 'websocket') return;
      const tcp = socket.request.socket;
      tcp.pause();
      setTimeout(() => tcp.destroy(), RATE_LIMITED_LINGER_MS).unref();
    });
    let subscribed = false;
    socket.on('dashboard:subscribe', () => {
      if (subscribed || feed === null) return;
      subscribed = true;
      feed.subscribe(socket);
    });
    let statusSubscribed = false;
    socket.on('status:subscribe', () => {
      if (statusSubscribed) return;
      statusSubscribed = true;
      statusFeed.subscribe(socket);
    });
    // A volunteer joining (the coordinator has registered it by now) or leaving changes the status.
    socket.on('volunteer:hello', () => statusFeed.changed());
    socket.on('disconnect', () => {
      if (socket.data.role === 'volunteer') statusFeed.changed();
      refusals.end(socket.id);
      if (socket.data.volunteerId !== null) refusals.end(socket.data.volunteerId);
    });
  });
  const ready = new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    ready,
    coordinator,
    address() {
      const a = server.address() as AddressInfo;
      const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
      return { host: a.address, port: a.port, url: `http://${host}:${a.port}` };
    },
    async close() {
      coordinator?.shutdown();
      feed?.close();
      statusFeed.close();
      // Let the answers to requests in flight (503, ERR_SHUTTING_DOWN) go out first.
      await new Promise((r) => setTimeout(r, 100));
      await new Promise<void>((resolve) => {
        io.close();
        server.closeAllConnections();
        server.close(() => resolve());
      });
    },
  };
}
