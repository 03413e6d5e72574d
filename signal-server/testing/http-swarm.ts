// A real server on port 0 with real-protocol Node volunteers (node-volunteer.ts)
// and requests over its HTTP API: the harness of the hostile-client tests
// (trust.test.ts) and the fallback's (fallback.test.ts). Each test file makes
// one; servers and volunteers end after each test, references after the file.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import { GREEDY, seededRandom } from '../../shared/model/sampling.js';
import type { Tokenizer } from '../../shared/model/tokenizer.js';
import type { StageVote } from '../../shared/protocol/messages.js';
import { fetchSwarmListing } from '../../testing/swarm-listing.js';
import { ensureStages, partitionKey } from '../models/model-folder.js';
import { ReferenceRunner } from '../reference/reference-runner.js';
import { createSignalServer, type SignalServer, type SignalServerOptions } from '../server.js';
import { fanoutOf } from './in-process-swarm.js';
import { NodeVolunteer, type NodeVolunteerOptions } from './node-volunteer.js';

export const MODEL = 'fixtures/models/tiny-untied';
export const PROMPT = 'It is a truth universally acknowledged';
export const TOKENS = 6;
/** How long a test waits for volunteers to be ready (their challenges, on 2 busy cores). */
export const WAIT_MS = 20_000;

export interface CompletionBody {
  choices?: { text: string }[];
  error?: { code: string; message: string };
  webswarm?: {
    tokens: number[];
    redundancy: number;
    verified: boolean;
    server_stages: number[];
    votes: { verified: boolean; server_stages: number[]; votes: StageVote[] }[];
  };
}

export interface CompletionResult {
  readonly status: number;
  readonly body: CompletionBody;
  readonly retryAfter: string | null;
  readonly ms: number;
}

export interface HttpSwarm {
  /** A server of MODEL cut into `stages`, with the reference's greedy tokens for PROMPT. */
  start(
    stages: number,
    redundancy: number,
    extra?: Partial<SignalServerOptions>,
  ): Promise<{ server: SignalServer; url: string; expected: number[]; tokenizer: Tokenizer }>;
  /** The stage cache the servers' stages are built in (this file's own). */
  stageCache(): string;
  /** A volunteer from `address` (127.0.0.x: a distinct client), with a client key of its own. */
  volunteer(url: string, address: string, options?: NodeVolunteerOptions): NodeVolunteer;
  readyCount(url: string): Promise<number>;
  /** `n` volunteers from 127.0.0.`base`…, each waited for until it has its stage, then all until ready. */
  joinAll(url: string, n: number, base: number, options?: (i: number) => NodeVolunteerOptions): Promise<NodeVolunteer[]>;
  /** POST /v1/completions of PROMPT, greedy; with `key`, as that API key. */
  complete(url: string, maxTokens?: number, key?: string): Promise<CompletionResult>;
}

export function httpSwarm(name: string): HttpSwarm {
  let cache = '';
  const servers: SignalServer[] = [];
  const volunteers: NodeVolunteer[] = [];
  const references = new Map<number, { runner: ReferenceRunner; tokens: number[] }>();
  beforeAll(() => {
    cache = mkdtempSync(join(tmpdir(), `webswarm-${name}-`));
  });
  afterEach(async () => {
    for (const v of volunteers.splice(0)) await v.close();
    for (const s of servers.splice(0)) await s.close();
  });
  afterAll(async () => {
    for (const r of references.values()) await r.runner.close();
    rmSync(cache, { recursive: true, force: true });
  });
  const api: HttpSwarm = {
    async start(stages, redundancy, extra = {}) {
      const { dir, manifest } = await ensureStages(MODEL, { stages }, cache);
      const server = createSignalServer({
        port: 0,
        host: '127.0.0.1',
        webRoot: null,
        models: [{ dir, manifest, key: partitionKey(3, { stages }) }],
        redundancy,
        routeWaitMs: 3_000,
        joinTimeoutMs: 5_000,
        stepTimeoutMs: 10_000,
        ratePerMinute: 0,
        apiMaxConcurrent: 0,
        spotCheckRate: 0,
        random: seededRandom(99),
        ...fanoutOf(undefined),
        ...extra,
      });
      await server.ready;
      servers.push(server);
      let ref = references.get(stages);
      if (ref === undefined) {
        const runner = await ReferenceRunner.fromStageDir(dir);
        ref = { runner, tokens: (await runner.generateIds(runner.tokenizer.encode(PROMPT), TOKENS, GREEDY)).tokens };
        references.set(stages, ref);
      }
      return { server, url: server.address().url, expected: ref.tokens, tokenizer: ref.runner.tokenizer };
    },
    stageCache: () => cache,
    volunteer(url, address, options = {}) {
      const v = new NodeVolunteer(url, {
        localAddress: address,
        clientKey: `client-${address.replaceAll('.', '-')}-${volunteers.length}`,
        ...options,
      });
      volunteers.push(v);
      return v;
    },
    async readyCount(url) {
      return (await fetchSwarmListing(url)).list.filter((v) => v.ready).length;
    },
    async joinAll(url, n, base, options = () => ({})) {
      const all: NodeVolunteer[] = [];
      for (let i = 0; i < n; i++) {
        const v = api.volunteer(url, `127.0.0.${base + i}`, options(i));
        all.push(v);
        await expect.poll(() => v.stage, { timeout: WAIT_MS }).not.toBeNull();
      }
      // These n ready, whoever else is (counting all the ready passed by chance while a swarm already had some: a
      // member ready before, and the last of these not yet ready).
      const ids = new Set(all.map((v) => v.id));
      await expect
        .poll(async () => (await fetchSwarmListing(url)).list.filter((v) => v.ready && ids.has(v.id)).length, { timeout: WAIT_MS })
        .toBe(n);
      return all;
    },
    async complete(url, maxTokens = TOKENS, key) {
      const t0 = performance.now();
      const res = await fetch(`${url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(key === undefined ? {} : { authorization: `Bearer ${key}` }) },
        body: JSON.stringify({ model: 'tiny-untied', prompt: PROMPT, max_tokens: maxTokens, temperature: 0 }),
      });
      return {
        status: res.status,
        body: (await res.json()) as CompletionBody,
        retryAfter: res.headers.get('retry-after'),
        ms: performance.now() - t0,
      };
    },
  };
  return api;
}
