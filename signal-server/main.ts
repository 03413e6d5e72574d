/**
 * Starts the webswarm server. Every setting comes from a flag or the
 * environment (the flag wins); SETTINGS below is the list, with defaults.
 * README's table lists the same (main.test.ts keeps the two equal).
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { isIP } from 'node:net';
import { basename, isAbsolute, join } from 'node:path';
import { parseArgs } from 'node:util';
import { ModelError } from '../shared/model/errors.js';
import { DEFAULT_MAX_BATCH } from '../shared/model/pipeline.js';
import { WEIGHT_PRECISIONS, type WeightPrecision } from '../shared/model/quantize.js';
import { fusedFormProblem, GRAPH_FORMS, type GraphForm } from '../shared/model/stage-graph-fused.js';
import { ICE_TRANSPORT_POLICIES, type IceServer, type IceTransportPolicy } from '../shared/protocol/messages.js';
import { MAX_REDUNDANCY } from '../shared/protocol/validate.js';
import { DEFAULT_MAX_SOCKETS_PER_ADDRESS } from './address-sockets.js';
import { editDistance, unknownOptionHint } from './closest-name.js';
import { FANOUT_MODES, type Fanout } from './coordinator/coordinator-types.js';
import { DEFAULT_FALLBACK_MAX_SESSIONS, FALLBACK_MODES, type FallbackMode } from './coordinator/fallback.js';
import { DEFAULT_LOCAL_ADDRESSES } from './coordinator/identity.js';
import { DEFAULT_CONTEXT, DEFAULT_MODEL, DEFAULT_STAGES, modelDir, STAGE_CACHE } from './defaults.js';
import { TrustedProxies } from './http/client-address.js';
import { PageOrigins } from './http/page-origins.js';
import { DEFAULT_TURN_TTL_S, iceOptionsProblem, MAX_TURN_TTL_S, parseIceServersSetting } from './ice-config.js';
import { createLogger, LOG_FORMATS, LOG_LEVELS, type LogFormat, type Logger, type LogLevel, resolveLogFormat } from './log.js';
import { mirrorProblem } from './models/mirror-check.js';
import { ensureStages, MIN_CONTEXT, readModelConfig, readTensorIndex } from './models/model-folder.js';
import { createSignalServer, DEFAULT_API_MAX_CONCURRENT, DEFAULT_MAX_BODY_BYTES, type SignalServer } from './server.js';

export interface StartOptions {
  readonly port: number;
  readonly host: string;
  readonly model: string;
  readonly stages: number;
  /** How the stages store their weights, for the whole swarm: f32, f16, q8 or q4. */
  readonly weights: WeightPrecision;
  /**
   * The stage graphs' form for the whole swarm: plain operators (the reference), onnxruntime's fused ones, or auto:
   * fused where the model has a fused form, else plain (GRAPH_SETTINGS).
   */
  readonly graph: GraphSetting;
  /** Positions a session may hold, at most the model's max_position_embeddings; 0: the model's (contextFor). */
  readonly context: number;
  readonly webRoot: string;
  readonly stageCache: string;
  /** Where volunteers fetch the model folder's weights from (a mirror with range requests and CORS); null = this server. */
  readonly weightsUrl: string | null;
  readonly redundancy: number;
  /** production (default) refuses volunteers that inject faults; demo and test accept them. */
  readonly mode: 'production' | 'demo' | 'test';
  readonly apiKeys: readonly string[];
  readonly ratePerMinute: number;
  /** Generations one API key (or address when open) may have running at once; 0 = no limit. */
  readonly apiMaxConcurrent: number;
  readonly maxBodyBytes: number;
  readonly maxSocketsPerAddress: number;
  readonly logLevel: LogLevel;
  readonly logFormat: LogFormat;
  /** Fraction of sessions after which each replica is challenged again (0..1). */
  readonly spotCheckRate: number;
  /** Requests that may wait for a route at once; more get 503 ERR_BUSY at once. */
  readonly maxQueued: number;
  /** This machine's addresses: its volunteers are told apart by client key alone. */
  readonly localAddresses: readonly string[];
  /** Reverse proxies (addresses or CIDR ranges) whose X-Forwarded-For names the client. */
  readonly trustedProxies: readonly string[];
  /** The server's public origins, whose pages may connect as volunteers (ORIGINS). */
  readonly origins: readonly string[];
  /** STUN/TURN servers handed to volunteers (RTCIceServer[]). */
  readonly iceServers: readonly IceServer[];
  /** coturn's static-auth-secret: TURN credentials are made per volunteer with it; null = none. Never logged. */
  readonly turnSecret: string | null;
  /** Lifetime of those credentials; fresh ones are sent at half of it. */
  readonly turnTtlS: number;
  readonly iceTransportPolicy: IceTransportPolicy;
  /** Where a stage is short of volunteers: off (fail), stage (the server computes it), whole (the server computes the request). */
  readonly fallback: FallbackMode;
  /** Sessions the server computes stages of at once; more wait in turn up to the route wait (then 503). */
  readonly fallbackMaxSessions: number;
  /** Change the partition live when departures leave a stage short (on), or never (off). */
  readonly repartition: 'on' | 'off';
  /** The mesh loop: the last stage sends each token straight to stage 0; the coordinator verifies off the critical path. */
  readonly meshLoop: boolean;
  /** How replicas send frames: all (every sender to every receiver) or majority (a rotation, the rest on request). */
  readonly fanout: Fanout;
  /** The most sessions' decode steps of a stage the fallback runs as one call; 1 = each step alone. */
  readonly fallbackMaxBatch: number;
  /** Redis shared by several server processes of one swarm; null = this process alone. */
  readonly redisUrl: string | null;
}

interface Setting {
  readonly env: string;
  readonly flag: string;
  readonly fallback: string;
  readonly help: string;
}

/** The shortest API key API_KEYS takes: 20 random characters are beyond any guessing over HTTP. */
export const MIN_API_KEY_CHARS = 20;

/** Every server setting: environment variable, flag, default and meaning. */
export const SETTINGS = {
  port: { env: 'PORT', flag: 'port', fallback: '8080', help: 'HTTP port (0 = any free port)' },
  host: { env: 'HOST', flag: 'host', fallback: '127.0.0.1', help: 'address to listen on (0.0.0.0 for every interface)' },
  model: {
    env: 'MODEL',
    flag: 'model',
    fallback: DEFAULT_MODEL,
    help: 'model: a folder name under models/, or a path to a Hugging Face folder',
  },
  stages: { env: 'STAGES', flag: 'stages', fallback: String(DEFAULT_STAGES), help: 'pipeline stages the model is split into' },
  weights: {
    env: 'WEIGHTS',
    flag: 'weights',
    fallback: 'f32',
    help: `weight precision of every stage: ${WEIGHT_PRECISIONS.join(', ')} (f16 halves downloads; q8, q4 are MatMulNBits blocks of 32)`,
  },
  graph: {
    env: 'GRAPH',
    flag: 'graph',
    fallback: 'auto',
    help: "stage graphs' form: plain ONNX operators, fused (onnxruntime's GroupQueryAttention, SkipSimplifiedLayerNormalization; faster), or auto: fused where the model has that form (head size a multiple of 16), else plain",
  },
  context: {
    env: 'CONTEXT',
    flag: 'context',
    fallback: String(DEFAULT_CONTEXT),
    help: "positions a session may hold (prompt and completion), at most the model's max_position_embeddings, at least 4 (a challenge step's); 0 = the model's. Fused stage files carry rotary tables of this many rows, and a volunteer's KV buffers and graph capture are sized to it",
  },
  redundancy: { env: 'REDUNDANCY', flag: 'redundancy', fallback: '3', help: 'replicas per stage that vote on every step (1 to 32)' },
  webRoot: { env: 'WEB_ROOT', flag: 'web-root', fallback: 'dist', help: 'the built web app' },
  stageCache: { env: 'STAGE_CACHE', flag: 'stage-cache', fallback: STAGE_CACHE, help: 'where built stage files are kept' },
  weightsUrl: {
    env: 'WEIGHTS_URL',
    flag: 'weights-url',
    fallback: '',
    help: "where volunteers fetch the model folder's weights by range requests (any static server with CORS); empty = this server",
  },
  mode: {
    env: 'WEBSWARM_MODE',
    flag: 'mode',
    fallback: 'production',
    help: 'production refuses fault-injecting volunteers; demo and test accept them',
  },
  apiKeys: {
    env: 'API_KEYS',
    flag: 'api-keys',
    fallback: '',
    help: `comma-separated keys for the /v1 API (Authorization: Bearer), each at least ${MIN_API_KEY_CHARS} characters; empty = open`,
  },
  ratePerMinute: {
    env: 'RATE_LIMIT_PER_MINUTE',
    flag: 'rate-limit',
    fallback: '60',
    help: 'API requests per minute per key (per address when open); 0 = no limit',
  },
  apiMaxConcurrent: {
    env: 'API_MAX_CONCURRENT',
    flag: 'api-max-concurrent',
    fallback: String(DEFAULT_API_MAX_CONCURRENT),
    help: 'generations one key (per address when open) may run at once; more get 429; 0 = no limit',
  },
  maxBodyBytes: {
    env: 'MAX_BODY_BYTES',
    flag: 'max-body-bytes',
    fallback: String(DEFAULT_MAX_BODY_BYTES),
    help: 'largest API request body',
  },
  spotCheckRate: {
    env: 'SPOT_CHECK_RATE',
    flag: 'spot-check-rate',
    fallback: '0.1',
    help: 'chance (0–1) that a replica is challenged again after a session',
  },
  maxQueued: { env: 'MAX_QUEUED', flag: 'max-queued', fallback: '64', help: 'requests waiting for a route at once; more get 503' },
  maxSocketsPerAddress: {
    env: 'MAX_SOCKETS_PER_ADDRESS',
    flag: 'max-sockets-per-address',
    fallback: String(DEFAULT_MAX_SOCKETS_PER_ADDRESS),
    help: 'Socket.IO connections (tabs) one client address may hold at once (plain HTTP connections: twice this), not counting LOCAL_ADDRESSES; 0 = no limit',
  },
  localAddresses: {
    env: 'LOCAL_ADDRESSES',
    flag: 'local-addresses',
    fallback: DEFAULT_LOCAL_ADDRESSES.join(','),
    help: "this machine's addresses: volunteers from them are told apart by key alone",
  },
  trustedProxies: {
    env: 'TRUSTED_PROXIES',
    flag: 'trusted-proxies',
    fallback: '',
    help: 'reverse proxies (addresses or CIDR ranges, comma-separated) whose X-Forwarded-For names the client; empty = none',
  },
  origins: {
    env: 'ORIGINS',
    flag: 'origins',
    fallback: '',
    help: "this server's public origins, whose pages may connect as volunteers (comma-separated, e.g. https://swarm.example; * = any); pages reached by its address or localhost may always",
  },
  iceServers: {
    env: 'ICE_SERVERS',
    flag: 'ice-servers',
    fallback: '[]',
    help: 'STUN/TURN servers for volunteers, JSON RTCIceServer[]; [] = peers reach each other only on one host or LAN',
  },
  turnSecret: {
    env: 'TURN_SECRET',
    flag: 'turn-secret',
    fallback: '',
    help: "coturn's static-auth-secret: short-lived TURN credentials per volunteer (use-auth-secret); never logged",
  },
  turnTtlS: { env: 'TURN_TTL_S', flag: 'turn-ttl', fallback: String(DEFAULT_TURN_TTL_S), help: 'lifetime of TURN credentials in seconds' },
  iceTransportPolicy: {
    env: 'ICE_TRANSPORT_POLICY',
    flag: 'ice-transport-policy',
    fallback: 'all',
    help: 'all: any candidate; relay: data channels only through TURN',
  },
  fallback: {
    env: 'FALLBACK',
    flag: 'fallback',
    fallback: 'stage',
    help: 'a stage short of volunteers: off = the request fails (503); stage = the server computes that stage; whole = the server computes the whole request. Such tokens say so',
  },
  fallbackMaxSessions: {
    env: 'FALLBACK_MAX_SESSIONS',
    flag: 'fallback-max-sessions',
    fallback: String(DEFAULT_FALLBACK_MAX_SESSIONS),
    help: 'sessions the server computes stages of at once; more wait in turn, the least served client first, up to the route wait (then 503 ERR_BUSY, Retry-After)',
  },
  fallbackMaxBatch: {
    env: 'FALLBACK_MAX_BATCH',
    flag: 'fallback-max-batch',
    fallback: String(DEFAULT_MAX_BATCH),
    help: "the most sessions' decode steps of one stage the server's fallback runs as one onnxruntime call; 1 = every step alone",
  },
  repartition: {
    env: 'REPARTITION',
    flag: 'repartition',
    fallback: 'on',
    help: 'on: when departures leave a stage short, volunteers move or the model is cut anew (requests in flight are replayed), and cut back once volunteers return; off: the partition never changes. With REDIS_URL, turn it on for every process',
  },
  meshLoop: {
    env: 'MESH_LOOP',
    flag: 'mesh-loop',
    fallback: 'on',
    help: 'on: the last stage sends each token straight to stage 0 over the data channels and the coordinator verifies every step off the critical path (a wrong token is rolled back, never streamed); off: every token goes through the coordinator',
  },
  fanout: {
    env: 'FANOUT',
    flag: 'fanout',
    fallback: 'majority',
    help: 'all: every replica sends its frames to every replica of the next stage (r² messages a hop); majority: each receiver gets copies from a majority of its senders by a rotation, and asks the others for theirs when those do not agree at once (the vote is the same)',
  },
  redisUrl: {
    env: 'REDIS_URL',
    flag: 'redis-url',
    fallback: '',
    help: 'Redis (redis://host:port) shared by several server processes behind one URL; empty = one process alone',
  },
  logLevel: { env: 'LOG_LEVEL', flag: 'log-level', fallback: 'info', help: `log level: ${LOG_LEVELS.join(', ')}` },
  logFormat: {
    env: 'LOG_FORMAT',
    flag: 'log-format',
    fallback: 'auto',
    help: 'json (pino lines), pretty (one human line a record), or auto: pretty on a terminal, json otherwise',
  },
} as const satisfies Record<keyof StartOptions, Setting>;

/** The settings as parseArgs options (all strings), for CLIs that take them as flags. */
export const SETTING_FLAGS = Object.fromEntries(Object.values(SETTINGS).map((s) => [s.flag, { type: 'string' as const }])) as Record<
  (typeof SETTINGS)[keyof typeof SETTINGS]['flag'],
  { type: 'string' }
>;

/** WEIGHTS_URL: empty, an http(s) URL of a folder, or a path on this server; ending with '/' so that file names resolve inside it. */
function weightsUrlSetting({ value, from }: { value: string; from: string }): string | null {
  if (value === '') return null;
  let ok = value.startsWith('/') && !value.startsWith('//');
  try {
    ok ||= ['http:', 'https:'].includes(new URL(value).protocol);
  } catch {
    // not an absolute URL
  }
  if (!ok) throw new Error(`${from} must be an http(s) URL or a path starting with /, got "${value}"`);
  return value.endsWith('/') ? value : `${value}/`;
}

/** Reads the settings: a flag's value, else the environment's, else the default; a bad value throws naming it. */
export function optionsFrom(env: NodeJS.ProcessEnv, flags: Readonly<Record<string, string | boolean | undefined>> = {}): StartOptions {
  const raw = (s: Setting): { value: string; from: string } => {
    const f = flags[s.flag];
    if (typeof f === 'string') return { value: f, from: `--${s.flag}` };
    const e = env[s.env];
    if (e !== undefined && e !== '') return { value: e, from: s.env };
    return { value: s.fallback, from: `the default of ${s.env}` };
  };
  const int = (s: Setting, min: number, max = Number.MAX_SAFE_INTEGER): number => {
    const { value, from } = raw(s);
    // Decimal digits only: Number() reads " " and "" as 0, and takes "0x4700" and "1e3" (an operator's typo).
    const n = /^\s*-?\d+\s*$/.test(value) ? Number(value) : Number.NaN;
    if (!Number.isInteger(n) || n < min || n > max)
      throw new Error(
        `${from} must be an integer ${max === Number.MAX_SAFE_INTEGER && !(n > max) ? `≥ ${min}` : `from ${min} to ${max}`}, got "${value}"`,
      );
    return n;
  };
  const fraction = (s: Setting): number => {
    const { value, from } = raw(s);
    const n = Number(value);
    // Written in decimal (Number() also reads "0x1" and "0b1", which the integer settings refuse).
    if (!/^\s*(\d+\.?\d*|\.\d+)(e[+-]?\d+)?\s*$/i.test(value) || !Number.isFinite(n) || n < 0 || n > 1)
      throw new Error(`${from} must be a number from 0 to 1, got "${value}"`);
    return n;
  };
  const oneOf = <T extends string>(s: Setting, allowed: readonly T[]): T => {
    const { value, from } = raw(s);
    if (!(allowed as readonly string[]).includes(value)) throw new Error(`${from} must be one of ${allowed.join(', ')}, got "${value}"`);
    return value as T;
  };
  const list = (s: Setting): string[] =>
    raw(s)
      .value.split(',')
      .map((k) => k.trim())
      .filter((k) => k !== '');
  const proxies = list(SETTINGS.trustedProxies);
  try {
    new TrustedProxies(proxies);
  } catch (e) {
    throw new Error(`${raw(SETTINGS.trustedProxies).from}: ${(e as Error).message}`);
  }
  const origins = list(SETTINGS.origins);
  try {
    new PageOrigins(origins);
  } catch (e) {
    throw new Error(`${raw(SETTINGS.origins).from}: ${(e as Error).message}`);
  }
  const secret = raw(SETTINGS.turnSecret).value;
  const servers = raw(SETTINGS.iceServers);
  const ice = {
    iceServers: parseIceServersSetting(servers.value, servers.from),
    turnSecret: secret === '' ? null : secret,
    // At most a week: the credentials are renewed at half their lifetime by a timer, which Node caps at 2^31 ms
    // (a larger value fired at once, renewing them about 600 times a second).
    turnTtlS: int(SETTINGS.turnTtlS, 60, MAX_TURN_TTL_S),
    iceTransportPolicy: oneOf(SETTINGS.iceTransportPolicy, ICE_TRANSPORT_POLICIES),
  };
  const iceProblem = iceOptionsProblem({ ...ice, transportPolicy: ice.iceTransportPolicy });
  if (iceProblem !== null) throw new Error(iceProblem);
  const redis = raw(SETTINGS.redisUrl);
  // Never quoted: it may hold the password.
  // A URL that does not parse (a port that is not a number, say) failed only once the stages were built, as
  // "Invalid URL", naming no setting.
  if (redis.value !== '' && (!/^rediss?:\/\/\S+$/.test(redis.value) || !URL.canParse(redis.value)))
    throw new Error(`${redis.from} must be a redis:// or rediss:// URL (the value is not shown: it may hold a password)`);
  const host = raw(SETTINGS.host);
  // An empty flag would listen on every interface, the opposite of what leaving it out does.
  if (host.value.trim() === '') throw new Error(`${host.from} must name an address to listen on (0.0.0.0 for every interface), got ""`);
  const locals = raw(SETTINGS.localAddresses);
  const localAddresses = list(SETTINGS.localAddresses);
  // Each an IP address as the socket reports it: another never matches, and this machine's tabs lose their exemption.
  const notIp = localAddresses.find((a) => isIP(a) === 0);
  if (notIp !== undefined) throw new Error(`${locals.from} must list IP addresses (as 127.0.0.1, ::1), got "${notIp.slice(0, 64)}"`);
  const model = raw(SETTINGS.model);
  if (model.value.trim() === '') throw new Error(`${model.from} must name a model folder, got ""`);
  const keys = raw(SETTINGS.apiKeys);
  const apiKeys = list(SETTINGS.apiKeys);
  // Set, but to separators only: the API would be open where its operator meant it keyed.
  if (keys.value.trim() !== '' && apiKeys.length === 0 && keys.from !== `the default of ${SETTINGS.apiKeys.env}`)
    throw new Error(`${keys.from} holds no key (only separators); leave it empty for an open API`);
  // A wrong key costs a guesser one quick 401, and an address's allowance of them would only lock its honest
  // clients out (a key that still worked for them would tell the guesser it was right): a key is safe by its
  // length. A red-team pass found README's example key, 10 characters, among 300 guesses in 182 ms.
  // A key written twice is one client's: the second client meant to have one of its own shares its rate limit
  // and its generations at once, and cannot be told apart in the log or cut off alone.
  const again = apiKeys.findIndex((k, i) => apiKeys.indexOf(k) !== i);
  if (again !== -1)
    throw new Error(
      `${keys.from}: key ${again + 1} is key ${apiKeys.indexOf(apiKeys[again] ?? '') + 1} again; give each client a key of its own`,
    );
  const short = apiKeys.findIndex((k) => k.length < MIN_API_KEY_CHARS);
  if (short !== -1)
    throw new Error(
      `${keys.from}: key ${short + 1} has ${apiKeys[short]?.length} characters; a key needs at least ${MIN_API_KEY_CHARS} (random ones: \`openssl rand -hex 16\` makes 32), or it can be guessed`,
    );
  return {
    redisUrl: redis.value === '' ? null : redis.value,
    ...ice,
    // Named here: beyond 65535, Node's listen throws a message that names no setting.
    port: int(SETTINGS.port, 0, 65_535),
    host: host.value,
    model: model.value,
    stages: int(SETTINGS.stages, 1),
    weights: oneOf(SETTINGS.weights, WEIGHT_PRECISIONS),
    graph: oneOf(SETTINGS.graph, GRAPH_SETTINGS),
    context: contextSetting(raw(SETTINGS.context), int(SETTINGS.context, 0)),
    webRoot: raw(SETTINGS.webRoot).value,
    stageCache: raw(SETTINGS.stageCache).value,
    weightsUrl: weightsUrlSetting(raw(SETTINGS.weightsUrl)),
    // A volunteer holds a WebRTC link to each replica of the stages beside its own, and reports at most twice
    // this many unreached (shared/protocol/validate.ts); REDUNDANCY=100 was taken and no stage ever filled.
    redundancy: int(SETTINGS.redundancy, 1, MAX_REDUNDANCY),
    mode: oneOf(SETTINGS.mode, ['production', 'demo', 'test'] as const),
    apiKeys,
    ratePerMinute: int(SETTINGS.ratePerMinute, 0),
    apiMaxConcurrent: int(SETTINGS.apiMaxConcurrent, 0),
    maxBodyBytes: int(SETTINGS.maxBodyBytes, 1024),
    maxSocketsPerAddress: int(SETTINGS.maxSocketsPerAddress, 0),
    logLevel: oneOf(SETTINGS.logLevel, LOG_LEVELS),
    logFormat: oneOf(SETTINGS.logFormat, LOG_FORMATS),
    spotCheckRate: fraction(SETTINGS.spotCheckRate),
    // At least one: 0 refused every request (each waits in the queue, however briefly, before its route).
    maxQueued: int(SETTINGS.maxQueued, 1),
    fallback: oneOf(SETTINGS.fallback, FALLBACK_MODES),
    fallbackMaxSessions: int(SETTINGS.fallbackMaxSessions, 1),
    fallbackMaxBatch: int(SETTINGS.fallbackMaxBatch, 1),
    repartition: oneOf(SETTINGS.repartition, ['on', 'off'] as const),
    meshLoop: oneOf(SETTINGS.meshLoop, ['on', 'off'] as const) === 'on',
    fanout: oneOf(SETTINGS.fanout, FANOUT_MODES),
    localAddresses,
    trustedProxies: proxies,
    origins,
  };
}

/** GRAPH's values: a form, or auto (fused where the model has it). */
export const GRAPH_SETTINGS = ['auto', ...GRAPH_FORMS] as const;
export type GraphSetting = (typeof GRAPH_SETTINGS)[number];

/**
 * The form GRAPH names; for auto, fused where the model folder's config.json (read alone, not the weights) has a fused
 * form (fusedFormProblem), else plain, said in the log. A model folder that cannot be read is left to the stage build, which names what is wrong.
 */
export function graphFor(setting: GraphSetting, folder: string, log: (line: string) => void): GraphForm {
  if (setting !== 'auto') return setting;
  let problem: string | null;
  try {
    problem = fusedFormProblem(readModelConfig(folder).config);
  } catch {
    return 'plain';
  }
  if (problem !== null) log(`GRAPH=auto: plain stage graphs, this model has no fused form (${problem})`);
  return problem === null ? 'fused' : 'plain';
}

/** CONTEXT's value: 0 (the model's) or at least MIN_CONTEXT positions (a challenge step's). */
function contextSetting(raw: { readonly from: string; readonly value: string }, n: number): number {
  if (n > 0 && n < MIN_CONTEXT)
    throw new Error(
      `${raw.from} must be 0 (the model's own context) or at least ${MIN_CONTEXT} positions (a challenge step's), got "${raw.value}"`,
    );
  return n;
}

/**
 * The context the stages are built for (BuildChoice.context): `setting` positions, or the model's where it states
 * fewer (or `setting` is 0), said in the log where it cuts the model's. A model folder that cannot be read is left to
 * the stage build, which names what is wrong.
 */
export function contextFor(setting: number, folder: string, log: (line: string) => void): number | undefined {
  let own: number;
  try {
    own = readModelConfig(folder).config.maxPositions;
  } catch {
    return undefined;
  }
  // Asked for more than the model holds (not the default, which is meant for models that hold more): said, since
  // README's table says "at most the model's" and the start serves the model's all the same (an operator's find).
  if (setting > own && setting !== DEFAULT_CONTEXT)
    log(`CONTEXT: ${setting} is more than the model's ${own} positions; serving its ${own}`);
  if (setting === 0 || setting >= own) return undefined;
  log(`CONTEXT: serving ${setting} of the model's ${own} positions (CONTEXT=0 serves them all)`);
  return setting;
}

/** The setting an environment variable that is none was likely meant as (API_KEY, TRUSTED_PROXY, ORIGIN), if any. */
export function meantSetting(name: string): string | undefined {
  if (!/^[A-Z][A-Z0-9_]{2,}$/.test(name)) return undefined;
  const names = Object.values(SETTINGS).map((s) => s.env as string);
  if (names.includes(name)) return undefined;
  // Our own prefix: a setting of webswarm's, whatever follows.
  if (name.startsWith('WEBSWARM_')) return names.find((n) => n === name.slice('WEBSWARM_'.length)) ?? 'a setting';
  return names.find((n) => {
    let common = 0;
    while (common < Math.min(n.length, name.length) && n[common] === name[common]) common++;
    // Short names one edit off (HOME is two from HOST, and no typo), longer ones two; or a long shared start that
    // ends within two of the shorter name's end (TRUSTED_PROXY, MAX_SOCKETS_PER_IP; not HOSTNAME for HOST), or the
    // setting's first words (REDIS for REDIS_URL).
    return (
      editDistance(n, name) <= (n.length <= 5 ? 1 : 2) ||
      (common >= 6 && common >= Math.min(n.length, name.length) - 2) ||
      (name.length >= 4 && n.startsWith(`${name}_`))
    );
  });
}

/**
 * What a start should tell its operator of its settings before it serves: an environment variable that looks like a
 * setting and is none (a typo: the setting it meant keeps its default, and API_KEY for API_KEYS leaves the API
 * open), an open API (a warning where the server listens beyond loopback), and trusted proxies so wide that any
 * client can name itself in X-Forwarded-For (past rate limits and bans).
 */
export function startNotes(
  env: NodeJS.ProcessEnv,
  o: Pick<StartOptions, 'host' | 'apiKeys' | 'trustedProxies'>,
): {
  readonly warn: readonly string[];
  readonly info: readonly string[];
} {
  const warn: string[] = [];
  const info: string[] = [];
  for (const name of Object.keys(env).sort()) {
    const meant = meantSetting(name);
    if (meant === undefined) continue;
    warn.push(
      `the environment variable ${name} is no setting of webswarm, and is not read${meant === 'a setting' ? '' : `: did you mean ${meant}?`} (README.md, Configuration)`,
    );
  }
  if (o.apiKeys.length === 0) {
    const loopback = o.host === 'localhost' || o.host === '::1' || o.host.startsWith('127.');
    (loopback ? info : warn).push(
      `the API (/v1) is open to anyone who reaches ${loopback ? 'this machine' : o.host}: no API_KEYS (--api-keys) set`,
    );
  }
  for (const entry of o.trustedProxies) {
    const bits = /\/(\d+)$/.exec(entry.trim())?.[1];
    if (bits !== undefined && Number(bits) < 8)
      warn.push(
        `TRUSTED_PROXIES (--trusted-proxies) ${entry} trusts ${Number(bits) === 0 ? 'every address' : 'a vast range'}: a client there can name any address in X-Forwarded-For, past rate limits and bans; list the proxies' own addresses`,
      );
  }
  return { warn, info };
}

/** A stage build's failure, naming the setting behind it where one is (STAGES, STAGE_CACHE); else as it came. */
function settingOf(e: unknown, o: StartOptions): unknown {
  if (e instanceof ModelError && e.code === 'ERR_MODEL_BAD_PARTITION') return new Error(`STAGES (--stages) is ${o.stages}: ${e.message}`);
  const code = (e as NodeJS.ErrnoException).code;
  if (
    typeof code === 'string' &&
    ['ERR_STAGE_DIR', 'ENOTDIR', 'EACCES', 'EPERM', 'EROFS', 'ENOSPC', 'EEXIST', 'ENAMETOOLONG'].includes(code)
  )
    return new Error(`STAGE_CACHE (--stage-cache) ${o.stageCache} cannot hold the stage files: ${(e as Error).message}`);
  return e;
}

/** The logger a setting asks for, on stdout: `auto` is pretty when stdout is a terminal. */
export function loggerFor(o: Pick<StartOptions, 'logLevel' | 'logFormat'>): Logger {
  return createLogger(o.logLevel, undefined, resolveLogFormat(o.logFormat, process.stdout.isTTY));
}

export async function startServer(o: StartOptions, logger: Logger = loggerFor(o)): Promise<SignalServer> {
  const log = (line: string) => logger.info(line);
  // Relative paths are the working directory's: a start from elsewhere (a service with no working directory set)
  // found neither, and was told the web app was not built (an operator's find).
  const fromHere = (path: string) =>
    isAbsolute(path)
      ? ''
      : ` (relative to the working directory, ${process.cwd()}: start from the repository's folder, or give an absolute path)`;
  if (!existsSync(o.webRoot))
    throw new Error(`WEB_ROOT (--web-root) ${o.webRoot} is missing${fromHere(o.webRoot)}; npm run build writes the web app there`);
  if (!statSync(o.webRoot).isDirectory())
    throw new Error(`WEB_ROOT (--web-root) ${o.webRoot} is not a folder: name the built web app's (dist)`);
  // Served as it is (a folder of one's own pages may be meant), but said: every page would answer 404.
  if (!existsSync(join(o.webRoot, 'index.html')))
    logger.warn(`WEB_ROOT (--web-root) ${o.webRoot} holds no index.html: the pages will answer 404 (npm run build writes them to dist)`);
  const folder = modelDir(o.model);
  if (!existsSync(folder)) {
    const ids = existsSync('models') ? readdirSync('models', { withFileTypes: true }).filter((e) => e.isDirectory()) : [];
    throw new Error(
      `MODEL (--model) ${o.model}: no model folder at ${folder}${fromHere(folder)}${o.model.includes('/') ? '' : `; the models under models/: ${ids.map((e) => e.name).join(', ') || 'none'}`}`,
    );
  }
  const t0 = performance.now();
  const partition = { stages: o.stages };
  const graph = graphFor(o.graph, folder, log);
  const context = contextFor(o.context, folder, log);
  const choice = { weights: o.weights, graph, ...(context === undefined ? {} : { context }) };
  const { dir, manifest, built } = await ensureStages(folder, partition, o.stageCache, choice).catch((e: unknown) => {
    throw settingOf(e, o);
  });
  log(
    `${built ? 'built' : 'reused'} ${manifest.stages.length} ${manifest.weights} ${manifest.graph} stages of ${manifest.modelId} in ${(performance.now() - t0).toFixed(0)} ms (${dir})`,
  );
  const server = createSignalServer({
    port: o.port,
    host: o.host,
    webRoot: o.webRoot,
    models: [
      {
        manifest,
        dir,
        key: basename(dir),
        modelDir: folder,
        ...(o.weightsUrl === null ? {} : { weightsUrl: o.weightsUrl }),
      },
    ],
    redundancy: o.redundancy,
    allowFaults: o.mode !== 'production',
    apiKeys: o.apiKeys,
    ratePerMinute: o.ratePerMinute,
    apiMaxConcurrent: o.apiMaxConcurrent,
    maxBodyBytes: o.maxBodyBytes,
    maxSocketsPerAddress: o.maxSocketsPerAddress,
    spotCheckRate: o.spotCheckRate,
    maxQueued: o.maxQueued,
    fallback: o.fallback,
    fallbackMaxSessions: o.fallbackMaxSessions,
    ...(o.repartition === 'on' ? { repartition: { stageCache: o.stageCache } } : {}),
    meshLoop: o.meshLoop,
    fanout: o.fanout,
    fallbackMaxBatch: o.fallbackMaxBatch,
    localAddresses: o.localAddresses,
    trustedProxies: o.trustedProxies,
    volunteerOrigins: o.origins,
    ice: { iceServers: o.iceServers, turnSecret: o.turnSecret, turnTtlS: o.turnTtlS, transportPolicy: o.iceTransportPolicy },
    ...(o.redisUrl === null ? {} : { redisUrl: o.redisUrl }),
    logger,
  });
  await server.ready.catch((e: unknown) => {
    // Named by its setting, as every other start failure is.
    const m = e instanceof Error ? e.message : String(e);
    throw m.startsWith('cannot reach Redis at ') ? new Error(`REDIS_URL (--redis-url): ${m}`) : e;
  });
  const mirror = o.weightsUrl;
  if (mirror !== null && /^https?:/.test(mirror)) {
    // Not awaited: a slow mirror delays no start. Its problem is said once, in the log the operator reads.
    void mirrorProblem(mirror, readTensorIndex(dir).weightsFile, new URL(server.address().url).origin).then((problem) => {
      if (problem !== null) logger.warn(`WEIGHTS_URL (--weights-url): ${problem}; volunteers cannot load their layers from it`);
      else log(`WEIGHTS_URL (--weights-url) ${mirror} answers range requests for the model's weights`);
    });
  }
  return server;
}

const isMain = process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].replace(/\\/g, '/'));
if (isMain) {
  let options: StartOptions;
  try {
    options = optionsFrom(process.env, parseArgs({ options: SETTING_FLAGS, strict: true }).values);
  } catch (e) {
    process.stderr.write(`error: ${unknownOptionHint(e, Object.keys(SETTING_FLAGS), 'README.md, Configuration')}\n`);
    process.exit(2);
  }
  const logger = loggerFor(options);
  const notes = startNotes(process.env, options);
  for (const line of notes.warn) logger.warn(line);
  for (const line of notes.info) logger.info(line);
  startServer(options, logger)
    .then((s) => {
      logger.info({ url: s.address().url }, `webswarm listening on ${s.address().url}`);
      const stop = (signal: NodeJS.Signals) => {
        logger.info(`stopping (${signal}): running requests end with ERR_SHUTTING_DOWN`);
        void s.close().then(() => process.exit(0));
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    })
    .catch((e: unknown) => {
      logger.fatal(e instanceof Error ? e.message : String(e));
      process.stderr.write(`error: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exit(1);
    });
}
