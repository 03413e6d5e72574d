// The status routes write the shapes shared/protocol/http.ts types and the
// pages parse; a generation's error reaches an HTTP client with the code that
// wireErrorOf gives it, the one Socket.IO's chat:error uses too.
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseModelListings, parseSwarmListing } from '../../shared/protocol/http.js';
import type { VolunteerView } from '../../shared/protocol/messages.js';
import { goldenModelDir } from '../../testing/golden.js';
import { AccessControl } from '../api/access.js';
import type { ApiSwarm } from '../api/api-swarm.js';
import { TokenTexts } from '../api/token-text.js';
import { GenerationError, wireErrorOf } from '../coordinator/generation.js';
import { silentLogger } from '../log.js';
import { SwarmMetrics } from '../metrics.js';
import { createRequestHandler, type ModelListing } from './routes.js';

const VOLUNTEERS: VolunteerView[] = [
  {
    id: 'v0',
    stage: 0,
    backend: 'wasm',
    adapter: null,
    state: 'ready',
    ready: true,
    agreed: 4,
    disagreed: 0,
    reputation: 0.9,
    established: true,
  },
  {
    id: 'v1',
    stage: 1,
    backend: 'webgpu',
    adapter: 'swiftshader',
    state: 'loading',
    ready: false,
    agreed: 0,
    disagreed: 1,
    reputation: 0.5,
    established: false,
  },
];
const LISTINGS: ModelListing[] = [{ modelId: 'm', stages: 2, baseUrl: '/models/m/2-stages', stageBytes: [1000, 2000] }];

/** What the next generation throws. */
let failure: unknown = null;

/**
 * A swarm whose generations fail with `failure`: the one way to make a
 * generation throw something other than a GenerationError (a bug) on purpose.
 */
const failingSwarm: ApiSwarm = {
  complete: () => Promise.reject(failure),
  chatPrompt: (messages) => messages.map((m) => m.content).join('\n'),
  promptText: (ids) => ids.join(' '),
  encode: (text) => [...text].map((c) => c.charCodeAt(0)),
  tokenizerInfo: () => ({ specials: { eos: null, bos: null, pad: null, chatTemplate: null }, vocabSize: 256, maxPositions: 64 }),
  status: () => ({ volunteers: VOLUNTEERS.length, replicasPerStage: [1, 1], redundancy: 1, fallback: 'stage' }),
  routablePerStage: () => [1, 1],
  volunteers: () => VOLUNTEERS,
  serviceStatus: () => ({
    modelId: 'm',
    redundancy: 1,
    volunteers: VOLUNTEERS.length,
    readyPerStage: [1, 1],
    routablePerStage: [1, 1],
    fallback: { mode: 'off', maxSessions: 0, sessions: 0 },
    windows: [],
  }),
};

/** A real model's token texts (the API reads them for every completion). */
function tokenTexts(): TokenTexts {
  const json = readFileSync(`${goldenModelDir('tiny-untied')}/tokenizer.json`, 'utf8');
  return TokenTexts.fromTokenizerJson(json, (ids) => ids.join(' '));
}

function serve(swarm: ApiSwarm | null, listings: readonly ModelListing[]): Promise<{ server: Server; url: string }> {
  const handler = createRequestHandler({
    swarm,
    listings,
    access: new AccessControl({ apiKeys: [], ratePerMinute: 0 }),
    metrics: new SwarmMetrics(null),
    webRoot: null,
    modelFiles: new Map(),
    tokenTexts: swarm === null ? null : tokenTexts(),
    maxBodyBytes: 65_536,
    startedS: 0,
    logger: silentLogger,
  });
  const server = createServer(handler);
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve({ server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` })),
  );
}

let servers: Server[] = [];
let url: string;
let emptyUrl: string;
beforeAll(async () => {
  const withSwarm = await serve(failingSwarm, LISTINGS);
  const empty = await serve(null, []);
  servers = [withSwarm.server, empty.server];
  url = withSwarm.url;
  emptyUrl = empty.url;
});
afterAll(async () => {
  for (const s of servers) await new Promise((r) => s.close(r));
});

const getJson = async (path: string, base = url) => (await fetch(`${base}${path}`)).json() as Promise<unknown>;

describe('the status routes', () => {
  it('GET /api/swarm is a SwarmListing', async () => {
    expect(parseSwarmListing(await getJson('/api/swarm'))).toEqual({
      ok: true,
      value: {
        volunteers: 2,
        replicasPerStage: [1, 1],
        redundancy: 1,
        routablePerStage: [1, 1],
        list: VOLUNTEERS,
        apiKeyRequired: false,
        fallback: 'stage',
      },
    });
    expect(parseSwarmListing(await getJson('/api/swarm', emptyUrl))).toEqual({
      ok: true,
      value: { volunteers: 0, replicasPerStage: [], redundancy: 0, routablePerStage: [], list: [], apiKeyRequired: false, fallback: 'off' },
    });
  });

  it('GET /api/models is a list of ModelListing', async () => {
    expect(parseModelListings(await getJson('/api/models'))).toEqual({ ok: true, value: LISTINGS });
    expect(parseModelListings(await getJson('/api/models', emptyUrl))).toEqual({ ok: true, value: [] });
  });
});

describe('errors of a generation', () => {
  it('wireErrorOf keeps a GenerationError and makes anything else ERR_INTERNAL, without its details', () => {
    expect(wireErrorOf(new GenerationError('ERR_NO_QUORUM', 'step 3: no majority'))).toEqual({
      code: 'ERR_NO_QUORUM',
      message: 'step 3: no majority',
    });
    for (const e of [new TypeError("Cannot read properties of undefined (reading 'x')"), 'a string', null])
      expect(wireErrorOf(e)).toEqual({ code: 'ERR_INTERNAL', message: 'internal error' });
  });

  it.each([
    [new TypeError('secret detail'), 500, { code: 'ERR_INTERNAL', message: 'internal error', type: 'server_error' }],
    [new GenerationError('ERR_NO_QUORUM', 'step 0: no majority'), 503, { code: 'ERR_NO_QUORUM', message: 'step 0: no majority' }],
    // A bad request the coordinator finds has the code of every other bad body.
    [new GenerationError('ERR_BAD_REQUEST', 'the prompt has no tokens'), 400, { code: 'invalid_request', type: 'invalid_request_error' }],
  ])(
    'POST /v1/completions when the generation throws %s: HTTP %i with the code wireErrorOf gives (a 400: invalid_request)',
    async (thrown, status, error) => {
      failure = thrown;
      const res = await fetch(`${url}/v1/completions`, {
        method: 'POST',
        body: JSON.stringify({ model: 'm', prompt: 'Emma', max_tokens: 2 }),
      });
      expect(res.status).toBe(status);
      const body = (await res.json()) as { error: Record<string, unknown> };
      expect(body.error).toMatchObject(error);
      expect(body.error.code).toBe(status === 400 ? 'invalid_request' : wireErrorOf(thrown).code);
    },
  );
});

describe('request targets', () => {
  it('takes "//v1/…" as the path it is, not as a URL whose host is "v1" (before: refused naming /chat/completions)', async () => {
    const { hostname, port } = new URL(url);
    const answer = await new Promise<string>((resolve, reject) => {
      const sock = connect(Number(port), hostname, () =>
        sock.write(
          `POST //v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}`,
        ),
      );
      let got = '';
      sock.on('data', (d) => {
        got += d.toString('utf8');
      });
      sock.on('end', () => resolve(got));
      sock.on('error', reject);
    });
    // No API route has that path: a POST there is refused, naming the path as sent.
    expect(answer.split('\r\n')[0]).toBe('HTTP/1.1 405 Method Not Allowed');
    expect(answer).toContain('POST is not allowed on //v1/chat/completions');
  });

  it("answers an OpenAI path without its /v1 (a client's base URL set to the origin) with a 404 in OpenAI's shape naming /v1", async () => {
    for (const [method, path] of [
      ['POST', '/chat/completions'],
      ['POST', '/completions'],
      ['GET', '/models'],
      ['POST', '/responses'],
    ] as const) {
      const res = await fetch(`${url}${path}`, { method, ...(method === 'POST' ? { body: '{}' } : {}) });
      expect(res.status, path).toBe(404);
      const body = (await res.json()) as { error: Record<string, unknown> };
      expect(body.error).toMatchObject({ type: 'invalid_request_error', param: null, code: 'not_found' });
      expect(body.error.message).toContain(`is /v1${path}`);
    }
    // A browser's preflight there passes (its client sends Authorization), so the page reads the 404 above rather
    // than a bare network error (before: a 404 without the CORS headers).
    for (const path of ['/chat/completions', '/responses']) {
      const pre = await fetch(`${url}${path}`, {
        method: 'OPTIONS',
        headers: {
          origin: 'https://example.com',
          'access-control-request-method': 'POST',
          'access-control-request-headers': 'authorization,content-type',
        },
      });
      expect(pre.status, path).toBeLessThan(300);
      expect(pre.headers.get('access-control-allow-headers')).toContain('authorization');
      expect(pre.headers.get('access-control-allow-origin')).toBe('*');
    }
    // /v1 alone: OpenAI's shape too (before: the web app's 404).
    const bare = await fetch(`${url}/v1`);
    expect(bare.status).toBe(404);
    expect(((await bare.json()) as { error: Record<string, unknown> }).error).toMatchObject({
      type: 'invalid_request_error',
      code: 'not_found',
    });
    // The web app's own pages are untouched.
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
  });
});
