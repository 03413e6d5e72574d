import { readFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type RequestListener } from 'node:http';
import { type AddressInfo, isIP, type Socket } from 'node:net';
import { join } from 'node:path';
import { Server } from 'socket.io';
import type { StageManifest } from '../shared/model/manifest.js';
import type { TensorIndex } from '../shared/model/tensor-index.js';
import { Tokenizer } from '../shared/model/tokenizer.js';
import { MAX_NET_DELAY_MS } from '../shared/protocol/messages.js';
import { AddressSockets, DEFAULT_MAX_SOCKETS_PER_ADDRESS } from './address-sockets.js';
import { AccessControl } from './api/access.js';
import type { ApiSwarm } from './api/api-swarm.js';
import { TokenTexts } from './api/token-text.js';
import { ClientConnections } from './client-connections.js';
import { Cluster, type ClusterOptions } from './cluster/cluster.js';
import { Coordinator } from './coordinator/coordinator.js';
import type { Fanout } from './coordinator/coordinator-types.js';
import { EventBudget, type EventBudgetOptions, SOCKET_BYTE_BUDGET, SOCKET_EVENT_BUDGET } from './coordinator/event-budget.js';
import { DEFAULT_FALLBACK_MAX_SESSIONS, type FallbackMode } from './coordinator/fallback.js';
import { addressKey, DEFAULT_LOCAL_ADDRESSES } from './coordinator/identity.js';
import type { PartitionBuilder } from './coordinator/repartition.js';
import { DashboardFeed } from './dashboard-feed.js';
import { TrustedProxies } from './http/client-address.js';
import { PageOrigins } from './http/page-origins.js';
import { createRequestHandler, folderFilesOf, listingOf, type ModelListing, modelFilesOf, tensorIndexesOf } from './http/routes.js';
import { type IceOptions, iceOptionsProblem, LOCAL_ICE } from './ice-config.js';
import { IceFeed } from './ice-feed.js';
import type { KeyedBucketsOptions } from './keyed-buckets.js';
import { type Logger, silentLogger } from './log.js';
import { LogLimiter, REFUSAL_LOG_LIMIT } from './log-limiter.js';
import { eventBytes, measuredParser } from './measured-parser.js';
import { type MetricsSource, SwarmMetrics } from './metrics.js';
import { TENSOR_INDEX_FILE } from './models/model-folder.js';
import { boundPipelining, MAX_PIPELINED } from './pipelined-requests.js';
import { DEFAULT_SEND_TIMEOUT_MS, watchSendTimeout } from './send-timeout.js';
import { bindSocketServer, type SwarmServer } from './socket-handlers.js';
import { lazyOracle, partitionBuilder, type RunnerPlace, servedSizes, stageBaseUrl, stageRunner } from './stage-runners.js';
import { StatusFeed } from './status-feed.js';
import { limitConnections } from './tcp-connections.js';

export type { ModelListing } from './http/routes.js';

/** A model's built stages, served to volunteers under /models/<modelId>/<key>/. */
export interface ServedStages {
  readonly manifest: StageManifest;
  /** The stage directory (manifest.json + the files it names). */
  readonly dir: string;
  /** The partition's key, e.g. "r0-2_2-4_4-6". */
  readonly key: string;
  /** The Hugging Face model folder the stages were cut from: served under /models/<id>/files/ with range requests, for volunteers to fetch their layers. */
  readonly modelDir?: string;
  /** Where volunteers fetch the model folder from instead of this server (any static server with range requests and CORS). */
  readonly weightsUrl?: string;
}

/**
 * Headers within 10 s, a whole request within 30 s (an API body has its own 10 s, bodyTimeoutMs); a response's bytes
 * taken by its client within 60 s of the last it took (send-timeout.ts).
 */
export const DEFAULT_HTTP_TIMEOUTS = { headersMs: 10_000, requestMs: 30_000, sendMs: DEFAULT_SEND_TIMEOUT_MS } as const;

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
  /** Generations one API key (or address when open) may have running at once, HTTP and the chat page's together; 0 = no limit (default 4). */
  readonly apiMaxConcurrent?: number;
  /** How long an API request's body may take to arrive (default 10 s; then 408). */
  readonly bodyTimeoutMs?: number;
  /** How far (bytes not yet sent) a streamed answer's reader may fall behind before its generation stops (default 8 MiB). */
  readonly streamBehindBytes?: number;
  /**
   * How long any HTTP request's headers, and the whole request, may take to arrive (default 10 s and 30 s; then 408
   * and the connection closed): a client trickling headers a byte a second held a connection 63 s before, and one
   * trickling a body 300 s, so a few hundred of them held every file descriptor.
   */
  readonly httpTimeouts?: { readonly headersMs: number; readonly requestMs: number; readonly sendMs?: number };
  /** Structured logs (pino); silent by default. */
  readonly logger?: Logger;
  /** Fraction of a replica's sessions after which it is spot-checked with a challenge step (default 0.1). */
  readonly spotCheckRate?: number;
  /** How long a volunteer has to answer a challenge step (default 60 s). */
  readonly challengeTimeoutMs?: number;
  /** Challenges a client may make the server compute, at once and a minute (default 32, then 16 a minute). */
  readonly challengeBudget?: KeyedBucketsOptions;
  /** Hellos an address (not this machine's) may say at once and a minute (DEFAULT_HELLO_BUDGET). */
  readonly helloBudget?: KeyedBucketsOptions;
  /** Requests that may wait for a route at once; more are refused at once with 503 (default 64). */
  readonly maxQueued?: number;
  /** Addresses whose volunteers are told apart by client key alone: this machine's (the local swarm). */
  readonly localAddresses?: readonly string[];
  /** Reverse proxies (addresses or CIDR ranges) whose X-Forwarded-For names the client; none by default. */
  readonly trustedProxies?: readonly string[];
  /**
   * The server's public origins, whose web pages may connect as volunteers (ORIGINS; `*` = any), besides pages reached
   * by its address or localhost: any other page is refused (ERR_FOREIGN_ORIGIN), a connection without an Origin (not a
   * browser) is not (http/page-origins.ts).
   */
  readonly volunteerOrigins?: readonly string[];
  /** Random source for routes and spot checks (tests seed it). */
  readonly random?: () => number;
  /** Makes volunteer ids (default random UUIDs; tests that need an order of ids name them). */
  readonly volunteerIds?: () => string;
  /** Inbound Socket.IO events per socket (default SOCKET_EVENT_BUDGET: 200/s, bursts of 400). */
  readonly socketEventBudget?: EventBudgetOptions;
  /** Inbound bytes per socket in events it is not owed (default SOCKET_BYTE_BUDGET: 16 MiB/s, bursts of 64 MiB). */
  readonly socketByteBudget?: EventBudgetOptions;
  /** Socket.IO connections one client address (not this machine's) may hold at once; 0 = no limit (default 64). */
  readonly maxSocketsPerAddress?: number;
  /** Counts every Socket.IO event by direction and name ("in step:digest", "out session:input"): the redundancy bench's message counts. */
  readonly socketEventTally?: Map<string, number>;
  /** The ICE servers (and TURN credentials) volunteers are handed (default LOCAL_ICE: none, any candidate). */
  readonly ice?: IceOptions;
  /**
   * Where a stage is short of volunteers, the server computes it with its own
   * runner (stage) or computes the whole request (whole); off fails the request
   * (503). Default off here; the server's FALLBACK setting defaults to stage.
   */
  readonly fallback?: FallbackMode;
  /** Sessions the fallback computes at once (default 4); more wait in turn up to the route wait, then 503 ERR_BUSY. */
  readonly fallbackMaxSessions?: number;
  /**
   * Where the first stage set's fallback and challenge runners compute (default thread: off the event loop); main only
   * for bench/fallback-loop.ts's side-by-side with the way it was. Not a setting of `npm start`.
   */
  readonly runners?: RunnerPlace;
  /** The mesh loop: the last stage feeds stage 0 its tokens over the data channels, verified off the critical path (default on). */
  readonly meshLoop?: boolean;
  /** The most of a scored prompt's positions in one step (default maxScoreRows); 1: a position a step (CoordinatorOptions.scoreRows). */
  readonly scoreRows?: number;
  /** How replicas send their frames (FANOUT; default majority): see CoordinatorOptions.fanout. */
  readonly fanout?: Fanout;
  /** The most sessions' decode steps of a stage the fallback runs as one call (default DEFAULT_MAX_BATCH); 1 = each alone. */
  readonly fallbackMaxBatch?: number;
  /** Redis (redis://host:port): this server is one of several sharing one swarm (signal-server/cluster/); none = alone. */
  readonly redisUrl?: string;
  /**
   * A one-way delay (ms) on every message between the coordinator and its
   * volunteers and on every data-channel message between volunteers, each
   * delayed once by its sender, in order: a WAN on one machine, for the bench
   * and tests only (no setting or environment variable turns it on). Default 0.
   */
  readonly netDelayMs?: number;
  /** The cluster's key prefix and timings (tests shorten them). */
  readonly cluster?: Omit<ClusterOptions, 'url' | 'log'>;
  /**
   * Re-partition the model live where departures leave a stage short (REPARTITION): new partitions' stage
   * files are built into this stage cache (with redisUrl, one of this process's own). Absent: the partition never changes. holdMs:
   * how long a partition serves before a switch back to the configured one (default REPARTITION_HOLD_MS);
   * distrustMs: how long a client that left or missed a load deadline is not counted for one (SWITCH_BACK_DISTRUST_MS).
   */
  readonly repartition?: {
    readonly stageCache: string;
    readonly holdMs?: number;
    readonly distrustMs?: number;
    /** How long no volunteer proves a stage before a stage short of r clients is made good (default FILL_QUIET_MS). */
    readonly fillQuietMs?: number;
  };
  /** How long a volunteer given a stage has to load it and be ready before it holds no seat (default LOAD_DEADLINE_MS; tests shorten it). */
  readonly loadDeadlineMs?: number;
}

/** Default largest API request body. */
export const DEFAULT_MAX_BODY_BYTES = 64 * 1024;
/** Generations one API client may have running at once (API_MAX_CONCURRENT). */
export const DEFAULT_API_MAX_CONCURRENT = 4;

/** Largest Socket.IO message accepted from a client. */
export const MAX_SOCKET_MESSAGE_BYTES = 1024 * 1024;

export interface SignalServer {
  /** Resolves once the server listens. */
  readonly ready: Promise<void>;
  address(): { host: string; port: number; url: string };
  close(): Promise<void>;
  /** The coordinator of the first served model (null when none is served). */
  readonly coordinator: Coordinator | null;
}

/** The model's tokenizer, and each token's text and bytes (for log-probabilities), from its stage directory. */
function tokenizerOf(m: ServedStages): { tokenizer: Tokenizer; texts: TokenTexts } {
  const read = (file: string) => readFileSync(join(m.dir, file), 'utf8');
  const json = read(m.manifest.tokenizer.file);
  const tokenizer = Tokenizer.fromJson(
    join(m.dir, m.manifest.tokenizer.file),
    json,
    m.manifest.tokenizerConfig === null ? null : read(m.manifest.tokenizerConfig.file),
  );
  return { tokenizer, texts: TokenTexts.fromTokenizerJson(json, (ids) => tokenizer.decode(ids)) };
}

/**
 * The sender a coordinator log line is about, when it reports one of that
 * sender's messages refused ("<id>: ERR_… …") or failed ("volunteer <id> failed
 * step …"), a hello refused ("refused volunteer from <address>: …") or a
 * handshake ("refused connection from <address>: …"): such lines are limited
 * per sender. Null for every other line.
 */
function senderOf(line: string): string | null {
  return (
    /^(\S+): ERR_[A-Z_]+ /.exec(line)?.[1] ??
    /^volunteer (\S+) failed step /.exec(line)?.[1] ??
    /^volunteer (\S+): a ready for partition /.exec(line)?.[1] ??
    /^refused volunteer from (\S+): /.exec(line)?.[1] ??
    /^refused connection from (\S+): /.exec(line)?.[1] ??
    null
  );
}

/**
 * The webswarm server: the web app, the model files and the API on one port.
 * A factory: it reads no environment and listens where it is told.
 */
export function createSignalServer(opts: SignalServerOptions): SignalServer {
  const ice = opts.ice ?? LOCAL_ICE;
  const iceProblem = iceOptionsProblem(ice);
  if (iceProblem !== null) throw new Error(iceProblem);
  const iceFeed = new IceFeed(ice);
  const netDelayMs = opts.netDelayMs ?? 0;
  if (!Number.isInteger(netDelayMs) || netDelayMs < 0 || netDelayMs > MAX_NET_DELAY_MS)
    throw new Error(`netDelayMs must be an integer from 0 to ${MAX_NET_DELAY_MS}, got ${netDelayMs}`);
  // An empty path would build new partitions into the working directory.
  if (opts.repartition !== undefined && opts.repartition.stageCache.trim() === '')
    throw new Error('repartition.stageCache is empty: name the folder where new partitions are built');
  // Connections held per client address (checked here: a bad limit throws before anything listens).
  const localAddresses = opts.localAddresses ?? DEFAULT_LOCAL_ADDRESSES;
  const held = new AddressSockets(opts.maxSocketsPerAddress ?? DEFAULT_MAX_SOCKETS_PER_ADDRESS, localAddresses);
  const logger = opts.logger ?? silentLogger;
  const log = (line: string) => logger.info(line);
  // Where each model's stage set is served, and its tensor index (read once from its directory), served beside it.
  // The routes read these maps on every request: a re-partition's stage set is served by adding to them.
  const places = opts.models.map((m) => ({ baseUrl: stageBaseUrl(m.manifest.modelId, m.key) }));
  const tensorIndexes = tensorIndexesOf(opts.models, places);
  const indexAt = (baseUrl: string) => tensorIndexes.get(`${baseUrl}/${TENSOR_INDEX_FILE}`) as TensorIndex;
  const listings: ModelListing[] = opts.models.map((m, i) => {
    const { baseUrl } = places[i] as { baseUrl: string };
    return listingOf(m.manifest, baseUrl, indexAt(baseUrl));
  });
  // The first model's checkpoint tensors: its re-partitions' too (they are cut from the same checkpoint).
  const firstPlace = places[0];
  const checkpoint = firstPlace === undefined ? null : indexAt(firstPlace.baseUrl);
  // Socket.IO wraps the request listeners the server has when it attaches (passing on all but its own
  // path), so the listener is there first; the routes it calls need the coordinator, which needs Socket.IO.
  let routes: RequestListener | null = null;
  const timeouts = opts.httpTimeouts ?? DEFAULT_HTTP_TIMEOUTS;
  if (!(timeouts.headersMs > 0 && timeouts.requestMs >= timeouts.headersMs))
    throw new RangeError(`httpTimeouts need 0 < headersMs ≤ requestMs (got ${timeouts.headersMs} and ${timeouts.requestMs})`);
  const server = createServer(
    {
      headersTimeout: timeouts.headersMs,
      requestTimeout: timeouts.requestMs,
      // Node checks both every 30 s by default, which let a slow client keep its connection that much longer.
      connectionsCheckingInterval: Math.min(1_000, timeouts.headersMs),
    },
    // At most MAX_PIPELINED requests in flight a connection; a closed one's queued responses told (pipelined-requests.ts).
    boundPipelining(
      (req, res) => {
        // The API's clients are keyed by this address too: behind an untrusted proxy, they all share one allowance.
        tellOfProxy(req.socket.remoteAddress, req.headers['x-forwarded-for'], 'an HTTP request', 'shares one API allowance');
        return routes === null ? res.writeHead(503).end() : routes(req, res);
      },
      (socket) => {
        metrics.httpPipeliningRefused.inc();
        closedLine(socket.remoteAddress, `over ${MAX_PIPELINED} requests in flight on it`);
      },
    ),
  );
  /** Once a run: a local address (a reverse proxy here?) forwards for others while no proxy is trusted. */
  let toldOfProxy = false;
  function tellOfProxy(remote: string | undefined, forwarded: string | string[] | undefined, what: string, consequence: string): void {
    if (toldOfProxy || forwarded === undefined || proxies.size > 0 || remote === undefined || !localAddresses.includes(remote)) return;
    toldOfProxy = true;
    // A warning: the operator's mistake, and LOG_LEVEL=warn must not hide it.
    logger.warn(
      `${what} from ${remote} (one of LOCAL_ADDRESSES) carries X-Forwarded-For: if a reverse proxy runs here, set TRUSTED_PROXIES=${remote}, or everyone behind it ${consequence}`,
    );
  }
  /** A line about a connection the server closed, at most 10 an address (an IPv6 /64) per 10 s. */
  const closedLine = (remote: string | undefined, why: string) => {
    const address = remote ?? 'unknown';
    refusals.line(addressKey(address), `closed a connection from ${address}: ${why}`);
  };
  // A client that stops reading is closed after sendMs, not held for as long as it keeps the connection.
  const sendMs = timeouts.sendMs ?? DEFAULT_SEND_TIMEOUT_MS;
  watchSendTimeout(server, sendMs, (socket) => {
    metrics.httpSendTimeouts.inc();
    closedLine(socket.remoteAddress, `its client took none of what it was sent for ${sendMs / 1000} s`);
  });
  // WebSocket only (every page connects so): no long-polling requests to bound besides.
  // measuredParser: each event's size, and at most one binary attachment an event (measured-parser.ts).
  const io: SwarmServer = new Server(server, {
    maxHttpBufferSize: MAX_SOCKET_MESSAGE_BYTES,
    serveClient: false,
    transports: ['websocket'],
    parser: measuredParser,
  });
  const proxies = new TrustedProxies(opts.trustedProxies ?? []);
  const pageOrigins = new PageOrigins(opts.volunteerOrigins ?? []);
  // The host the browser asked for: a trusted proxy's X-Forwarded-Host where it sends one (its own Host may be its
  // upstream's, 127.0.0.1:8080, which a page on the visitor's own machine could name), else the handshake's Host.
  const volunteerRefusal = (h: { address: string; headers: IncomingHttpHeaders }): string | null => {
    const forwarded = h.headers['x-forwarded-host'];
    const asked = proxies.trusts(h.address) && typeof forwarded === 'string' ? forwarded : h.headers.host;
    return pageOrigins.refusal(h.headers.origin, asked);
  };
  // Plain HTTP connections per address: twice its Socket.IO connections (tcp-connections.ts).
  const tcpHeld = new AddressSockets(2 * held.max, localAddresses);
  const tcpPlaces = limitConnections(server, tcpHeld, proxies, (address) => {
    metrics.tcpConnectionsRefused.inc();
    closedLine(address, `as it opened, the address holds ${tcpHeld.max} already`);
  });
  // A WebSocket Engine.IO accepted is held to Socket.IO's count instead (any other upgrade keeps its place).
  io.engine.on('connection', (raw: { request: { socket: Socket } }) => tcpPlaces.upgraded(raw.request.socket));
  // Connections per address and bytes per address, counted as each connection opens and each packet arrives.
  const byteOptions = opts.socketByteBudget ?? SOCKET_BYTE_BUDGET;
  const connections = new ClientConnections({
    held,
    byteOptions,
    localAddresses,
    proxies,
    cutOff: (c, message) => {
      metrics.socketsRateLimited.inc();
      const line = `${[...c.sockets].map((x) => x.data.volunteerId ?? x.id).join(', ') || 'a connection'} (${c.address}): ERR_RATE_LIMITED ${message}`;
      // Per address as every refusal line (a red-team helper, 2026-12-07: sockets that each flooded just past their
      // budget wrote a line each, 894 in 5 s from one address); this machine's own addresses (tests' tabs) are not.
      if (localAddresses.includes(c.address)) log(line);
      else refusals.line(addressKey(c.address), line);
    },
    refusedOne: (address, message) => {
      metrics.socketsRefused.inc();
      coordinatorLog(`refused connection from ${address}: ${message}`);
    },
  });
  connections.attach(io);
  // Before every other middleware: what follows keys the client by this address.
  io.use((socket, next) => {
    const forwarded = socket.handshake.headers['x-forwarded-for'];
    socket.data.address = connections.of(socket.conn)?.address ?? proxies.clientAddress(socket.handshake.address, forwarded);
    tellOfProxy(socket.handshake.address, forwarded, 'a connection', 'are told apart by client key alone');
    next();
  });
  const access = new AccessControl({
    apiKeys: opts.apiKeys ?? [],
    ratePerMinute: opts.ratePerMinute ?? 60,
    maxConcurrent: opts.apiMaxConcurrent ?? DEFAULT_API_MAX_CONCURRENT,
    proxies,
  });
  // One sender's refused messages write at most 10 lines per 10 s, then one "N more suppressed". A sender named by
  // its socket id (a requester, a socket before its hello) is its address where that is not this machine's own:
  // before, each new socket had 10 lines of its own, and one address opening and closing sockets that sent unknown
  // events wrote 48 750 lines (11.6 MB) in 10.5 s (a red-team helper, 2026-12-07). Volunteers' hellos have a budget
  // per address already.
  const refusals = new LogLimiter(REFUSAL_LOG_LIMIT, log);
  const refusalKey = (sender: string): string => {
    // A refused hello's or handshake's sender is its address: keyed as every per-address limit keys it (an IPv6 /64,
    // an IPv4-mapped address as its IPv4), or each address of a /64 had lines of its own (3 936 in 3 s).
    const address = isIP(sender) !== 0 ? sender : io.sockets.sockets.get(sender)?.data.address;
    return address === undefined || localAddresses.includes(address) ? sender : addressKey(address);
  };
  const coordinatorLog = (line: string) => {
    const sender = senderOf(line);
    if (sender === null) log(line);
    else refusals.line(refusalKey(sender), line);
  };
  // swarm:status goes to the sockets that asked for it (status:subscribe), at most once a second.
  const statusFeed = new StatusFeed(io, () => coordinator?.status() ?? { volunteers: 0, replicasPerStage: [], redundancy: 0 });
  const first = listings[0];
  const firstModel = opts.models[0];
  const tokens = firstModel === undefined ? null : tokenizerOf(firstModel);
  const cluster =
    opts.redisUrl === undefined || first === undefined
      ? null
      : new Cluster({ ...opts.cluster, url: opts.redisUrl, log, warn: (line) => logger.warn(line) });
  const modelFiles = modelFilesOf(opts.models, places);
  const built =
    opts.repartition === undefined || firstModel === undefined
      ? null
      : partitionBuilder(
          firstModel,
          opts.repartition.stageCache,
          (stages, baseUrl) => {
            const place = [{ baseUrl }];
            const routed = [
              {
                ...stages,
                ...(firstModel.modelDir === undefined ? {} : { modelDir: firstModel.modelDir }),
                ...(firstModel.weightsUrl === undefined ? {} : { weightsUrl: firstModel.weightsUrl }),
              },
            ];
            for (const [k, v] of modelFilesOf(routed, place)) modelFiles.set(k, v);
            for (const [k, v] of tensorIndexesOf(routed, place)) tensorIndexes.set(k, v);
          },
          (baseUrl) => {
            // An evicted cut's files are gone from the stage cache: no longer served.
            for (const k of [...modelFiles.keys()]) if (k.startsWith(`${baseUrl}/`)) modelFiles.delete(k);
            for (const k of [...tensorIndexes.keys()]) if (k.startsWith(`${baseUrl}/`)) tensorIndexes.delete(k);
          },
          (line) => logger.warn(line),
        );
  // GET /api/models lists the partition served now: the landing page counts its stages, the check page loads them.
  const builder: PartitionBuilder | null =
    built === null
      ? null
      : {
          ...built,
          switched(p) {
            built.switched?.(p);
            if (checkpoint !== null) listings[0] = listingOf(p.manifest, p.baseUrl, checkpoint);
          },
        };
  if (opts.repartition !== undefined && firstModel !== undefined && builder === null)
    log('REPARTITION is off: the model folder the stages were built from is not on this server');
  // The first stage set's challenge runner (made on first use), given back when the server closes.
  const firstOracle = firstModel === undefined ? null : lazyOracle(firstModel.dir, opts.runners);
  // Joiners are placed on a stage they can hold (memory, largest buffer): the served stages' sizes.
  const sizes = firstModel === undefined ? undefined : servedSizes(firstModel);
  const coordinator =
    first === undefined || firstModel === undefined || firstOracle === null || tokens === null
      ? null
      : new Coordinator(
          {
            modelId: first.modelId,
            numStages: first.stages,
            baseUrl: first.baseUrl,
            manifest: firstModel.manifest,
            tokenizer: tokens.tokenizer,
            partition: firstModel.key,
          },
          {
            redundancy: opts.redundancy ?? 3,
            allowFaults: opts.allowFaults ?? false,
            routeWaitMs: opts.routeWaitMs ?? 30_000,
            timeouts: { joinMs: opts.joinTimeoutMs ?? 30_000, stepMs: opts.stepTimeoutMs ?? 30_000 },
            oracle: firstOracle,
            statusChanged: () => statusFeed.changed(),
            ...(opts.spotCheckRate === undefined ? {} : { spotCheckRate: opts.spotCheckRate }),
            ...(opts.challengeTimeoutMs === undefined ? {} : { challengeTimeoutMs: opts.challengeTimeoutMs }),
            ...(opts.challengeBudget === undefined ? {} : { challengeBudget: opts.challengeBudget }),
            ...(opts.helloBudget === undefined ? {} : { helloBudget: opts.helloBudget }),
            ...(opts.maxQueued === undefined ? {} : { maxQueued: opts.maxQueued }),
            ...(opts.localAddresses === undefined ? {} : { localAddresses: opts.localAddresses }),
            ...(opts.random === undefined ? {} : { random: opts.random }),
            ...(opts.volunteerIds === undefined ? {} : { newId: opts.volunteerIds }),
            ...(opts.meshLoop === undefined ? {} : { meshLoop: opts.meshLoop }),
            ...(opts.scoreRows === undefined ? {} : { scoreRows: opts.scoreRows }),
            ...(opts.fanout === undefined ? {} : { fanout: opts.fanout }),
            // With several servers, frames between this server's replicas and other processes' volunteers go through Redis.
            ...(opts.fallback === undefined || opts.fallback === 'off'
              ? {}
              : {
                  fallback: {
                    mode: opts.fallback,
                    maxSessions: opts.fallbackMaxSessions ?? DEFAULT_FALLBACK_MAX_SESSIONS,
                    executor: stageRunner(firstModel.dir, opts.runners),
                    ...(opts.fallbackMaxBatch === undefined ? {} : { maxBatch: opts.fallbackMaxBatch }),
                  },
                }),
            ...(cluster === null ? {} : { bans: cluster.bans, links: cluster.links, newSessionId: () => cluster.nextSessionId() }),
            ...(builder === null ? {} : { repartition: builder }),
            ...(sizes === undefined ? {} : { sizes }),
            ...(opts.repartition?.holdMs === undefined ? {} : { repartitionHoldMs: opts.repartition.holdMs }),
            ...(opts.repartition?.fillQuietMs === undefined ? {} : { repartitionFillQuietMs: opts.repartition.fillQuietMs }),
            ...(opts.loadDeadlineMs === undefined ? {} : { loadDeadlineMs: opts.loadDeadlineMs }),
            ...(opts.repartition?.distrustMs === undefined ? {} : { switchBackDistrustMs: opts.repartition.distrustMs }),
          },
          coordinatorLog,
        );
  // The routes and the metrics see the coordinator only through these interfaces.
  const swarm: ApiSwarm | null = coordinator;
  const metricsSource: MetricsSource | null = coordinator;
  const metrics = new SwarmMetrics(metricsSource);
  routes = createRequestHandler({
    swarm,
    listings,
    access,
    metrics,
    webRoot: opts.webRoot,
    modelFiles,
    folderFiles: folderFilesOf(opts.models),
    tensorIndexes,
    tokenTexts: tokens?.texts ?? null,
    maxBodyBytes: opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES,
    ...(opts.bodyTimeoutMs === undefined ? {} : { bodyTimeoutMs: opts.bodyTimeoutMs }),
    ...(opts.streamBehindBytes === undefined ? {} : { streamBehindBytes: opts.streamBehindBytes }),
    startedS: Math.floor(Date.now() / 1000),
    logger,
  });
  const feed = coordinator === null ? null : new DashboardFeed(io, coordinator);
  const budgetOptions = opts.socketEventBudget ?? SOCKET_EVENT_BUDGET;
  io.on('connection', (socket) => {
    // Every inbound event spends from the socket's event budget and, with every other packet, from its connection's
    // byte budget (ClientConnections); over either the event is dropped unanswered, and a flood (far over it) is
    // told ERR_RATE_LIMITED once and disconnected.
    const budget = new EventBudget(budgetOptions);
    connections.joined(socket.conn, socket);
    socket.use((args, next) => {
      const [event, raw] = args;
      // A step report a replica owes a live session is work the server asked for, bounded by the session's steps:
      // not counted (the bytes it arrived as given back to the byte budget), or a fast honest swarm would lose
      // reports (report-allowance.ts).
      if (coordinator?.owesReport(socket.data.volunteerId, event, raw) === true) {
        connections.refund(socket.conn, eventBytes.get(args) ?? 0);
        return next();
      }
      const byEvents = budget.take();
      const byBytes = connections.admit(socket.conn);
      if (byEvents === 'serve' && byBytes === 'serve') return next();
      metrics.socketEventsDropped.inc();
      if (byEvents === 'abusive' && byBytes !== 'cut')
        connections.cutOff(
          socket.conn,
          `more than ${budgetOptions.ratePerS} events a second (bursts of ${budgetOptions.burst}); ${budget.droppedTotal} dropped; disconnected`,
        );
    });
    const tally = opts.socketEventTally;
    if (tally !== undefined) {
      const count = (key: string) => tally.set(key, (tally.get(key) ?? 0) + 1);
      socket.use(([event], next) => {
        count(`in ${event}`);
        next();
      });
      socket.onAnyOutgoing((event) => count(`out ${event}`));
    }
    iceFeed.attach(socket);
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
    // An address's lines (refusalKey) outlive its sockets: their summary comes when its window is over, once (a
    // summary as each socket left would be a line a socket again).
    socket.on('disconnect', () => {
      refusals.end(socket.id);
      if (socket.data.volunteerId !== null) refusals.end(socket.data.volunteerId);
    });
  });
  // After the budget's middleware: an event over budget is dropped before it is parsed.
  if (coordinator !== null) bindSocketServer(io, coordinator, coordinatorLog, access, netDelayMs, volunteerRefusal);
  // After the handshake's check: a connection opened over its address's limit is told why (ClientConnections
  // closes it shortly, whatever it does).
  io.use((socket, next) => {
    const refusal = connections.refusal(socket.conn);
    if (refusal === null) return next();
    next(Object.assign(new Error(`${refusal.code}: ${refusal.message}`), { data: refusal }));
  });
  // In a cluster, the server listens once it has joined: its sessions need the process number in their ids.
  const joined = cluster === null || coordinator === null ? Promise.resolve() : cluster.start(coordinator);
  const ready = joined.then(
    () =>
      new Promise<void>((resolve, reject) => {
        // Node's own message (EADDRINUSE, ENOTFOUND, …) names no setting: say which two to change.
        const fail = (e: Error) => reject(new Error(`cannot listen on ${opts.host}:${opts.port} (HOST, PORT): ${e.message}`, { cause: e }));
        server.once('error', fail);
        server.listen(opts.port, opts.host, () => {
          server.off('error', fail);
          resolve();
        });
      }),
  );
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
      await cluster?.stop().catch(() => {});
      feed?.close();
      statusFeed.close();
      // Let the answers to requests in flight (503, ERR_SHUTTING_DOWN) go out first.
      await new Promise((r) => setTimeout(r, 100));
      await new Promise<void>((resolve) => {
        io.close();
        server.closeAllConnections();
        server.close(() => resolve());
      });
      // The runners' onnxruntime sessions live in this process's WASM heap: another server started here (tests,
      // benchmarks) would otherwise run out of it (std::bad_alloc) after a few.
      await Promise.all([firstOracle?.release?.(), builder?.release?.(), coordinator?.release()]);
    },
  };
}
