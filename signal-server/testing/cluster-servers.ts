// Servers of one cluster for tests: real servers on port 0 joined by a real
// redis-server (startRedisServer), each test's cluster under a key prefix of
// its own, and what a test needs to watch the traffic between them.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClient } from 'redis';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { GREEDY } from '../../shared/model/sampling.js';
import type { Cluster } from '../cluster/cluster.js';
import { decode, decodeInbox, parseBusMessage } from '../cluster/messages.js';
import type { Logger } from '../log.js';
import { ensureStages, partitionKey } from '../models/model-folder.js';
import { ReferenceRunner } from '../reference/reference-runner.js';
import { createSignalServer, type SignalServer } from '../server.js';
import { NodeVolunteer } from './node-volunteer.js';
import { type RedisServer, startRedisServer } from './redis-server.js';

/** What a cluster test file shares: its redis-server, its stage cache, and what each test started. */
export interface ClusterTestFile {
  /** The file's redis-server's URL (started before the file's first test). */
  readonly redisUrl: string;
  /** The file's stage cache. */
  readonly cache: string;
  /** Servers and volunteers a test started: ended after it. */
  readonly servers: SignalServer[];
  readonly volunteers: NodeVolunteer[];
  /** Stops the file's redis-server (an outage); `startRedis` brings one back on its port, empty (its data lost). */
  stopRedis(): Promise<void>;
  startRedis(): Promise<void>;
}

/**
 * Registers a cluster test file's hooks (as testing/http-swarm.ts does for one
 * server): a redis-server and a stage cache for the file, registered first so
 * that the file's own beforeAll can use them; the volunteers, then the servers,
 * each test started are closed after it.
 */
export function clusterTestFile(name: string): ClusterTestFile {
  let redis: RedisServer | null = null;
  let cache = '';
  const servers: SignalServer[] = [];
  const volunteers: NodeVolunteer[] = [];
  beforeAll(async () => {
    redis = await startRedisServer();
    cache = mkdtempSync(join(tmpdir(), `webswarm-${name}-`));
  });
  afterEach(async () => {
    for (const v of volunteers.splice(0)) await v.close();
    for (const s of servers.splice(0)) await s.close();
  });
  afterAll(async () => {
    await redis?.stop();
    if (cache !== '') rmSync(cache, { recursive: true, force: true });
  });
  return {
    get redisUrl() {
      if (redis === null) throw new Error('the redis-server starts before the first test');
      return redis.url;
    },
    get cache() {
      return cache;
    },
    servers,
    volunteers,
    async stopRedis() {
      await redis?.stop();
    },
    async startRedis() {
      if (redis === null) throw new Error('the redis-server starts before the first test');
      redis = await startRedisServer({ port: Number(new URL(redis.url).port) });
    },
  };
}

/**
 * Short heartbeats and publications: what a test waits for happens within a second. A death takes 3 s to be
 * noticed: with 1 s, a process whose heartbeat thread was starved of the CPU for a second (unit files three at
 * once on two cores) was taken for dead in the middle of tests about something else.
 */
export const CLUSTER_TIMINGS = { heartbeatMs: 200, deadAfterMs: 3_000, publishMs: 50, resyncMs: 500, reconnectMaxMs: 300 };

export interface ClusterShape {
  readonly model: string;
  readonly stages: number;
  /** Each server's own count of stages, where they differ (a misconfigured cluster); absent: `stages` for all. */
  readonly stagesEach?: readonly number[];
  /** Each server's CONTEXT (BuildChoice.context), where they differ (a misconfigured cluster); absent: the model's. */
  readonly contextEach?: readonly (number | undefined)[];
  readonly redundancy: number;
  readonly routeWaitMs?: number;
  readonly cache: string;
  /** Other timings than CLUSTER_TIMINGS (a slower publication, say). */
  readonly timings?: Partial<typeof CLUSTER_TIMINGS>;
  /** The server computes a stage short of volunteers (FALLBACK=stage); absent: off. */
  readonly fallback?: 'stage';
  /** The cluster protocol each server says it speaks (absent: this version's). */
  readonly protocols?: readonly number[];
  /** Where the servers log (absent: nowhere). */
  readonly logger?: Logger;
  /** Makes the volunteer ids of every server (absent: random UUIDs). */
  readonly volunteerIds?: () => string;
  /** Clients whose records Redis keeps at most (absent: KEPT_CLIENTS). */
  readonly keptClients?: number;
  /** How long a volunteer given a stage has to be ready before it holds no seat (absent: LOAD_DEADLINE_MS). */
  readonly loadDeadlineMs?: number;
  /** Re-partition live (REPARTITION), each server building into a stage cache of its own; absent: off. */
  readonly repartition?: { readonly holdMs?: number; readonly distrustMs?: number };
  /** Which servers re-partition, where not all of them do (a misconfigured cluster); absent: all, where `repartition` is set. */
  readonly repartitionEach?: readonly boolean[];
  /** How long a process's volunteers may be on another partition than another's before it drops them (ELSEWHERE_LIMIT_MS). */
  readonly elsewhereLimitMs?: number;
}

let prefixes = 0;

/** `n` servers of a new cluster on `redisUrl`; `prefix` is its Redis key prefix. */
export async function startCluster(n: number, redisUrl: string, shape: ClusterShape): Promise<{ servers: SignalServer[]; prefix: string }> {
  const prefix = `attack${++prefixes}-${process.pid}`;
  const servers: SignalServer[] = [];
  for (let i = 0; i < n; i++) servers.push(await joinCluster(prefix, i, redisUrl, shape));
  return { servers, prefix };
}

/** One more server of the cluster under `prefix` (the `i`th: its stage count and protocol from `shape`), ready. */
export async function joinCluster(prefix: string, i: number, redisUrl: string, shape: ClusterShape): Promise<SignalServer> {
  const stages = shape.stagesEach?.[i] ?? shape.stages;
  const context = shape.contextEach?.[i];
  const { dir, manifest } = await ensureStages(shape.model, { stages }, shape.cache, context === undefined ? {} : { context });
  const server = createSignalServer({
    port: 0,
    host: '127.0.0.1',
    webRoot: null,
    models: [{ dir, manifest, key: partitionKey(3, { stages }) }],
    redundancy: shape.redundancy,
    routeWaitMs: shape.routeWaitMs ?? 10_000,
    joinTimeoutMs: 5_000,
    stepTimeoutMs: 30_000,
    ratePerMinute: 0,
    apiMaxConcurrent: 0,
    spotCheckRate: 0,
    redisUrl,
    cluster: {
      prefix,
      ...CLUSTER_TIMINGS,
      ...shape.timings,
      ...(shape.protocols?.[i] === undefined ? {} : { protocol: shape.protocols[i] }),
      ...(shape.elsewhereLimitMs === undefined ? {} : { elsewhereLimitMs: shape.elsewhereLimitMs }),
      ...(shape.keptClients === undefined ? {} : { keptClients: shape.keptClients }),
    },
    ...(shape.fallback === undefined ? {} : { fallback: shape.fallback }),
    ...(shape.logger === undefined ? {} : { logger: shape.logger }),
    ...(shape.volunteerIds === undefined ? {} : { volunteerIds: shape.volunteerIds }),
    ...(shape.loadDeadlineMs === undefined ? {} : { loadDeadlineMs: shape.loadDeadlineMs }),
    ...(shape.repartition === undefined || shape.repartitionEach?.[i] === false
      ? {}
      : { repartition: { stageCache: join(shape.cache, `cuts-${prefix}-${i}`), ...shape.repartition } }),
  });
  await server.ready;
  return server;
}

/** The cluster part of `server` (a server of a cluster). */
export function clusterOf(server: SignalServer): Cluster {
  const cluster = server.coordinator?.cluster as Cluster | null | undefined;
  if (cluster === null || cluster === undefined) throw new Error('not a server of a cluster');
  return cluster;
}

/** The cluster's number of `server` (its inbox channel is `<prefix>:proc:<n>`). */
export function procOf(server: SignalServer): number {
  return clusterOf(server).proc;
}

/** Counts what arrives on a Redis channel (a process's inbox, the bus), by message type `t`. */
export async function watchChannel(
  redisUrl: string,
  channel: string,
): Promise<{ counts: Map<string, number>; bytes: () => number; stop: () => Promise<void> }> {
  const client = createClient({ url: redisUrl });
  await client.connect();
  const counts = new Map<string, number>();
  let bytes = 0;
  await client.subscribe(
    channel,
    (m) => {
      // An inbox message with bytes (decodeInbox) or JSON; "?" for anything else. The sessions and links a process
      // tells the others every resync ('open', 'links') are left out: a test's count would hang on how many resyncs
      // it saw.
      const t = (decodeInbox(m) ?? decode(m.toString('utf8'), parseBusMessage))?.t;
      if (t === 'open' || t === 'links') return;
      bytes += m.byteLength;
      const k = typeof t === 'string' ? t : '?';
      counts.set(k, (counts.get(k) ?? 0) + 1);
    },
    true,
  );
  return {
    counts,
    bytes: () => bytes,
    stop: async () => {
      client.destroy();
    },
  };
}

/** A greedy completion asked of `server` over HTTP: the tokens and route it was served by, or the error's code. */
export async function complete(
  server: SignalServer,
  prompt: string,
  maxTokens: number,
): Promise<{ status: number; tokens: number[] | undefined; route: string[][] | undefined; code: string | undefined }> {
  const res = await fetch(`${server.address().url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt, max_tokens: maxTokens, temperature: 0 }),
  });
  const body = (await res.json()) as { webswarm?: { tokens: number[]; route: string[][] }; error?: { code: string } };
  return { status: res.status, tokens: body.webswarm?.tokens, route: body.webswarm?.route, code: body.error?.code };
}

/** The reference runner's greedy tokens after `prompt`, `n` of them for each `n` of `counts`: what a cluster must answer. */
export async function referenceTokens(
  model: string,
  stages: number,
  cache: string,
  prompt: string,
  ...counts: number[]
): Promise<number[][]> {
  const { dir } = await ensureStages(model, { stages }, cache);
  const reference = await ReferenceRunner.fromStageDir(dir);
  try {
    const out: number[][] = [];
    for (const n of counts) out.push((await reference.generateIds(reference.tokenizer.encode(prompt), n, GREEDY)).tokens);
    return out;
  } finally {
    await reference.close();
  }
}

/**
 * What an honest volunteer may be told across a switch of partition, and means no fault of its own: a signal to a peer
 * whose session the switch ended, a report of such a session (the coordinator replays the request on the new partition).
 * Never a refusal, a strike or an eviction.
 */
export const SWITCH_RACES: ReadonlySet<string> = new Set(['ERR_NOT_LINKED', 'ERR_UNKNOWN_SESSION']);

/** The partition `s` serves now, as layer ranges ("0-2,2-3"). */
export const partitionOf = (s: SignalServer): string | undefined => s.coordinator?.partitionKey;
/** Volunteers ready on `s` (its own and the other processes' it mirrors). */
export const readyCount = (s: SignalServer): number => s.coordinator?.volunteers().filter((v) => v.ready).length ?? 0;
/** Volunteers `s` knows of (its own and the other processes' it mirrors). */
export const volunteerCount = (s: SignalServer): number => s.coordinator?.registry.all().length ?? 0;

/**
 * Honest volunteers of `f`, one on each server of `on` in turn (client keys `<name>-<i>`, addresses 127.0.0.<first + i>),
 * each seen by every server of `servers` before the next joins; resolves once every server sees them all ready.
 */
export async function joinVolunteers(
  f: ClusterTestFile,
  on: readonly SignalServer[],
  servers: readonly SignalServer[],
  name: string,
  first: number,
  readyMs = 90_000,
): Promise<NodeVolunteer[]> {
  const vs: NodeVolunteer[] = [];
  for (const [i, s] of on.entries()) {
    const v = new NodeVolunteer(s.address().url, { clientKey: `${name}-${i}`, localAddress: `127.0.0.${first + i}` });
    f.volunteers.push(v);
    vs.push(v);
    await until(`every server sees volunteer ${i}`, () => servers.every((x) => volunteerCount(x) === i + 1));
  }
  await until('every server sees them ready', () => servers.every((x) => readyCount(x) === on.length), readyMs);
  return vs;
}

/** Resolves once `test` holds; throws naming `what` after `ms`. */
export async function until(what: string, test: () => boolean, ms = 30_000): Promise<void> {
  for (const deadline = Date.now() + ms; !test(); ) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
