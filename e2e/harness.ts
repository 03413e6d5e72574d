// End-to-end harness: Debian's Chromium through playwright-core, and a real
// webswarm server on port 0 serving the built web app and real stage files.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import type { WeightPrecision } from '../shared/model/quantize.js';
import { GREEDY, type SamplingParams } from '../shared/model/sampling.js';
import type { GraphForm } from '../shared/model/stage-graph-fused.js';
import type { FaultKind } from '../shared/swarm/faults.js';
import type { FallbackMode } from '../signal-server/coordinator/fallback.js';
import type { IceOptions } from '../signal-server/ice-config.js';
import { createLogger, type LineSink, silentLogger } from '../signal-server/log.js';
import { ensureStages } from '../signal-server/models/model-folder.js';
import { ReferenceRunner } from '../signal-server/reference/reference-runner.js';
import type { SignalServer } from '../signal-server/server.js';
import { goldenModelDir } from '../testing/golden.js';
import { type LocalSwarm, launchChromium, startLocalSwarm } from '../tools/local-swarm.js';

export { buildWebApp } from '../tools/build-web.js';
export { launchChromium };

import { fanoutOf } from '../signal-server/testing/in-process-swarm.js';
import { startLocalServer } from '../tools/local-server.js';

export async function startTestServer(
  models: readonly { dir: string; stages: number; weights?: WeightPrecision; graph?: GraphForm; weightsUrl?: string }[],
  cacheRoot: string,
  extra: {
    redundancy?: number;
    allowFaults?: boolean;
    port?: number;
    quiet?: boolean;
    apiKeys?: string[];
    ratePerMinute?: number;
    /** API_MAX_CONCURRENT (default none: the specs send bursts from one address). */
    apiMaxConcurrent?: number;
    routeWaitMs?: number;
    random?: () => number;
    /** ICE_SERVERS, TURN_SECRET, TURN_TTL_S and ICE_TRANSPORT_POLICY. */
    ice?: IceOptions;
    /** Where the server's log lines go (default stderr; none when quiet). */
    logSink?: LineSink;
    /** FALLBACK (default off, as the factory's). */
    fallback?: FallbackMode;
    /** The bench's one-way transport delay (ms) on every message (SignalServerOptions.netDelayMs). */
    netDelayMs?: number;
    /** REPARTITION (default off, as the factory's): new partitions are built into `cacheRoot`. */
    repartition?: boolean;
    /** FANOUT: default WEBSWARM_FANOUT, else the server's default (all); `majority` runs any spec with the optimistic fan-out. */
    fanout?: 'all' | 'majority';
  } = {},
): Promise<SignalServer> {
  return startLocalServer(models, cacheRoot, {
    ...fanoutOf(extra.fanout),
    redundancy: extra.redundancy ?? 3,
    allowFaults: extra.allowFaults ?? false,
    // The specs send bursts of requests (the fuzzer thousands): no rate limit unless a spec asks for one.
    ratePerMinute: extra.ratePerMinute ?? 0,
    apiMaxConcurrent: extra.apiMaxConcurrent ?? 0,
    apiKeys: extra.apiKeys ?? [],
    ...(extra.port === undefined ? {} : { port: extra.port }),
    ...(extra.routeWaitMs === undefined ? {} : { routeWaitMs: extra.routeWaitMs }),
    ...(extra.random === undefined ? {} : { random: extra.random }),
    ...(extra.ice === undefined ? {} : { ice: extra.ice }),
    ...(extra.fallback === undefined ? {} : { fallback: extra.fallback }),
    ...(extra.netDelayMs === undefined ? {} : { netDelayMs: extra.netDelayMs }),
    ...(extra.repartition === true ? { repartition: { stageCache: cacheRoot } } : {}),
    logger: extra.quiet === true ? silentLogger : createLogger('info', extra.logSink ?? process.stderr),
  });
}

/** The model the swarm specs run: the default model (it ships in the repository). */
export const E2E_MODEL = 'austen-2m';

/** What a volunteer page says of why it idles (its idle-reason line), or null while it says nothing. */
export function idleReasonOf(tab: Page): Promise<string | null> {
  return tab
    .getByTestId('idle-reason')
    .textContent({ timeout: 1000 })
    .catch(() => null);
}

/** A quiet server whose model is one stage wanting one replica, a Chromium, and a stage cache: for the specs of single pages. */
export interface OneStageRig {
  readonly server: SignalServer;
  readonly browser: Browser;
  /** The stage cache (a temporary folder, removed by close). */
  readonly cache: string;
  close(): Promise<void>;
}

export async function startOneStageRig(extra: { routeWaitMs?: number } = {}): Promise<OneStageRig> {
  const cache = mkdtempSync(join(tmpdir(), 'webswarm-page-'));
  const server = await startTestServer([{ dir: goldenModelDir(E2E_MODEL), stages: 1 }], cache, {
    redundancy: 1,
    quiet: true,
    ...extra,
  });
  const browser = await launchChromium({ webgpu: false });
  return {
    server,
    browser,
    cache,
    async close() {
      await browser.close();
      await server.close();
      rmSync(cache, { recursive: true, force: true });
    },
  };
}

/** A server, a local swarm of volunteer tabs and the reference runner on the same stages: the oracle. */
export interface E2eSwarm {
  readonly server: SignalServer;
  readonly swarm: LocalSwarm;
  readonly reference: ReferenceRunner;
  /** The reference runner's tokens after `prompt`. */
  expected(prompt: string, tokens: number, sampling?: SamplingParams): Promise<number[]>;
  /** POST /v1/completions on this server. */
  complete(body: Record<string, unknown>): Promise<{ status: number; json: CompletionJson }>;
  close(): Promise<void>;
}

export interface CompletionJson {
  readonly choices: { text: string; finish_reason: string }[];
  readonly usage: { prompt_tokens: number; completion_tokens: number };
  readonly webswarm: {
    tokens: number[];
    route: string[][];
    server_stages: number[];
    votes: { token: number; server_stages: number[]; votes: { stage: number; agreed: number; replicas: number; server: boolean }[] }[];
  };
  readonly error?: { code: string; message: string };
}

export interface E2eSwarmOptions {
  readonly model?: string;
  readonly stages?: number;
  /** The stage graphs' form (GRAPH), plain by default. */
  readonly graph?: GraphForm;
  readonly redundancy?: number;
  readonly volunteers: number;
  readonly allowFaults?: boolean;
  readonly quiet?: boolean;
  readonly backendOf?: (index: number) => 'wasm' | 'webgpu';
  readonly faultOf?: (index: number) => FaultKind | null;
  /**
   * The server's random source for route choice. Specs that name which tab is
   * in a route and which is a spare pass `() => 0`: among equals, the first
   * ready (the first opened) is then drawn each time.
   */
  readonly random?: () => number;
  /** The server's ICE settings (ICE_SERVERS, TURN_SECRET, TURN_TTL_S, ICE_TRANSPORT_POLICY); none by default. */
  readonly ice?: IceOptions;
  /** Where the server's log lines go (default stderr). */
  readonly logSink?: LineSink;
  /** The server's FALLBACK (default off). */
  readonly fallback?: FallbackMode;
  /** The bench's one-way transport delay (ms), on the server's sends and on every tab's. */
  readonly netDelayMs?: number;
  /** The server's REPARTITION (default off). */
  readonly repartition?: boolean;
  /** Where the tabs run a step's data path (?datapath=); default: WEBSWARM_DATAPATH, else the page's default. */
  readonly dataPath?: 'main' | 'worker';
  /** The same per volunteer index. */
  readonly dataPathOf?: (index: number) => 'main' | 'worker';
  /** Graph capture per volunteer index (?capture=); none when not given. */
  readonly captureOf?: (index: number) => string | null;
}

/** How long a tab the page calls ready may take to pass the server's challenge (DEFAULT_CHALLENGE_TIMEOUT_MS). */
const PROVEN_TIMEOUT_MS = 60_000;

/**
 * Waits until the server counts each tab as ready. A tab says it is ready when
 * its stage has loaded; the server routes it only once it has answered its
 * challenge step, which a loaded machine may finish after the spec's first
 * request (with FALLBACK on, that request was then computed by the server
 * alone). A tab the server dropped (evicted, or gone) is not waited for.
 */
async function provenByServer(server: SignalServer, pages: readonly Page[]): Promise<void> {
  const coordinator = server.coordinator;
  if (coordinator === null) return;
  const ids = (await Promise.all(pages.map((p) => p.evaluate(() => window.webswarmVolunteer?.volunteerId ?? null)))).filter(
    (id): id is string => id !== null,
  );
  const deadline = performance.now() + PROVEN_TIMEOUT_MS;
  for (;;) {
    const views = new Map(coordinator.volunteers().map((v) => [v.id, v]));
    const waiting = ids.filter((id) => views.get(id)?.ready === false);
    if (waiting.length === 0) return;
    if (performance.now() > deadline) throw new Error(`the server never counted ${waiting.join(', ')} as ready (no challenge passed)`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function startE2eSwarm(o: E2eSwarmOptions): Promise<E2eSwarm> {
  const cache = mkdtempSync(join(tmpdir(), 'webswarm-e2e-'));
  const dir = goldenModelDir(o.model ?? E2E_MODEL);
  const stages = o.stages ?? 3;
  const graph = o.graph ?? 'plain';
  const server = await startTestServer([{ dir, stages, graph }], cache, {
    redundancy: o.redundancy ?? 3,
    allowFaults: o.allowFaults ?? false,
    quiet: o.quiet ?? false,
    ...(o.random === undefined ? {} : { random: o.random }),
    ...(o.ice === undefined ? {} : { ice: o.ice }),
    ...(o.logSink === undefined ? {} : { logSink: o.logSink }),
    ...(o.fallback === undefined ? {} : { fallback: o.fallback }),
    ...(o.netDelayMs === undefined ? {} : { netDelayMs: o.netDelayMs }),
    ...(o.repartition === undefined ? {} : { repartition: o.repartition }),
  });
  const reference = await ReferenceRunner.fromStageDir((await ensureStages(dir, { stages }, cache, { graph })).dir);
  const swarm = await startLocalSwarm({
    serverUrl: server.address().url,
    volunteers: o.volunteers,
    ...(o.backendOf === undefined ? {} : { backendOf: o.backendOf }),
    ...(o.faultOf === undefined ? {} : { faultOf: o.faultOf }),
    ...(o.dataPath === undefined ? {} : { dataPath: o.dataPath }),
    ...(o.dataPathOf === undefined ? {} : { dataPathOf: o.dataPathOf }),
    ...(o.captureOf === undefined ? {} : { captureOf: o.captureOf }),
    log: (l) => process.stderr.write(`${l}\n`),
  });
  try {
    await provenByServer(server, swarm.pages);
  } catch (e) {
    await swarm.close();
    await reference.close();
    await server.close();
    throw e;
  }
  return {
    server,
    swarm,
    reference,
    async expected(prompt, tokens, sampling = GREEDY) {
      return (await reference.generateIds(reference.tokenizer.encode(prompt), tokens, sampling)).tokens;
    },
    async complete(body) {
      const res = await fetch(`${server.address().url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      return { status: res.status, json: (await res.json()) as CompletionJson };
    },
    async close() {
      await swarm.close();
      await reference.close();
      await server.close();
      rmSync(cache, { recursive: true, force: true });
    },
  };
}
