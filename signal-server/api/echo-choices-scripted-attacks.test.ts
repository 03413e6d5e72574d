// Red team (83cd8ca): n choices with echo against a scripted swarm (the ApiSwarm seam, as in http/routes.test.ts), so
// that the order of the choices' ends can be forced: choices after the first end before choice 0 scored the prompt,
// choice 0 never scores (the client leaves), choice 0 fails after the others ended.
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { goldenModelDir } from '../../testing/golden.js';
import { GenerationError } from '../coordinator/generation.js';
import { createRequestHandler } from '../http/routes.js';
import { silentLogger } from '../log.js';
import { SwarmMetrics } from '../metrics.js';
import { AccessControl } from './access.js';
import type { ApiCompletion, ApiGenerationRequest, ApiScoredToken, ApiSwarm, ApiTokenUpdate } from './api-swarm.js';
import { TokenTexts } from './token-text.js';

const VOCAB = 2048;
const PROMPT_IDS = [1, 2, 3];
const N = 3;
type Script = (
  req: ApiGenerationRequest,
  onToken: (u: ApiTokenUpdate) => void,
  onScored: (u: ApiScoredToken) => void,
) => Promise<ApiCompletion>;
let script: Script = () => Promise.reject(new Error('no script'));
const seen: ApiGenerationRequest[] = [];

const swarm: ApiSwarm = {
  complete: (req, onToken, onScored) => {
    seen.push(req);
    return script(req, onToken ?? (() => {}), onScored ?? (() => {}));
  },
  chatPrompt: (messages) => messages.map((m) => m.content).join('\n'),
  promptText: (ids) => ids.join(' '),
  encode: (text) => [...text].map((c) => c.charCodeAt(0)),
  tokenizerInfo: () => ({ specials: { eos: null, bos: null, pad: null, chatTemplate: null }, vocabSize: 256, maxPositions: 64 }),
  status: () => ({ volunteers: 2, replicasPerStage: [2], redundancy: 2, fallback: 'off' }),
  routablePerStage: () => [2],
  volunteers: () => [],
  serviceStatus: () => ({
    modelId: 'm',
    redundancy: 2,
    volunteers: 2,
    readyPerStage: [2],
    routablePerStage: [2],
    fallback: { mode: 'off', maxSessions: 0, sessions: 0 },
    windows: [],
  }),
};

const logits = () => {
  const l = new Float32Array(VOCAB);
  l[5] = 3;
  return l;
};
const token = (index: number, id: number): ApiTokenUpdate => ({
  index,
  token: id,
  text: String(id),
  votes: [],
  verified: true,
  stepMs: 1,
  logits: logits(),
});
const done = (tokens: number[]): ApiCompletion => ({
  promptTokens: PROMPT_IDS,
  tokens,
  text: tokens.join(''),
  finishReason: 'length',
  route: [],
  redundancy: 2,
  verified: true,
});
const scoreAll = (onScored: (u: ApiScoredToken) => void) => {
  for (const [position, t] of PROMPT_IDS.entries())
    onScored({ position, token: t, logits: position === 0 ? null : logits(), votes: [], verified: true, stepMs: 1 });
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Resolves when `signal` aborts. */
const aborted = (signal: AbortSignal | undefined) =>
  new Promise<never>((_, reject) => signal?.addEventListener('abort', () => reject(new GenerationError('ERR_CANCELLED', 'cancelled'))));

let server: Server;
let url: string;
beforeAll(async () => {
  const json = readFileSync(`${goldenModelDir('tiny-untied')}/tokenizer.json`, 'utf8');
  const handler = createRequestHandler({
    swarm,
    listings: [{ modelId: 'm', stages: 1, baseUrl: '/models/m/1-stages', stageBytes: [1000] }],
    access: new AccessControl({ apiKeys: [], ratePerMinute: 0, maxConcurrent: N }),
    metrics: new SwarmMetrics(null),
    webRoot: null,
    modelFiles: new Map(),
    tokenTexts: TokenTexts.fromTokenizerJson(json, (ids) => ids.join('')),
    maxBodyBytes: 65_536,
    startedS: 0,
    logger: silentLogger,
  });
  server = createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

type Event = { index?: number; text?: string; finish?: string | null; lp?: number; error?: unknown };

async function stream(body: Record<string, unknown>, signal?: AbortSignal, onEvent?: (e: Event) => void) {
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'm', prompt: '123', echo: true, logprobs: 1, n: N, stream: true, ...body }),
    ...(signal === undefined ? {} : { signal }),
  });
  const events: Event[] = [];
  if (!res.ok) return { status: res.status, events };
  const reader = res.body?.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const r = await reader?.read();
    if (r === undefined || r.done) break;
    buffer += decoder.decode(r.value, { stream: true });
    let at = buffer.indexOf('\n\n');
    while (at >= 0) {
      const line = buffer.slice(0, at).replace(/^data: /, '');
      buffer = buffer.slice(at + 2);
      at = buffer.indexOf('\n\n');
      if (line === '[DONE]') continue;
      const j = JSON.parse(line) as {
        error?: unknown;
        choices?: { index: number; text: string; finish_reason: string | null; logprobs: { tokens: string[] } | null }[];
      };
      const list: Event[] =
        j.error !== undefined
          ? [{ error: j.error }]
          : (j.choices ?? []).map((c) => ({ index: c.index, text: c.text, finish: c.finish_reason, lp: c.logprobs?.tokens.length ?? 0 }));
      for (const e of list) {
        events.push(e);
        onEvent?.(e);
      }
    }
  }
  return { status: res.status, events };
}

describe('n choices with echo, scripted order of ends (red team)', () => {
  it('choices 1.. end before choice 0 scored the prompt: each choice still echoes first (whole prompt), its tokens after, its finish last', async () => {
    script = async (req, onToken, onScored) => {
      if (req.scorePrompt !== true) {
        onToken(token(0, 4));
        onToken(token(1, 7));
        return done([4, 7]);
      }
      await sleep(100);
      scoreAll(onScored);
      await sleep(20);
      onToken(token(0, 6));
      return done([6]);
    };
    const { events } = await stream({ max_tokens: 2 });
    expect(events.some((e) => e.error !== undefined)).toBe(false);
    for (let i = 0; i < N; i++) {
      const own = events.filter((e) => e.index === i);
      expect(own[0], `choice ${i} first`).toMatchObject({ text: '123', lp: 3, finish: null });
      expect(own.filter((e) => e.finish !== null && e.finish !== undefined)).toHaveLength(1);
      expect(own.at(-1)?.finish).toBe('length');
      expect(own.map((e) => e.text).join('')).toBe(i === 0 ? '1236' : '12347');
    }
  });

  it('choice 0 never scores and the client leaves: every choice’s generation is cancelled, the slots come back', async () => {
    const signals: AbortSignal[] = [];
    script = async (req, onToken) => {
      if (req.signal !== undefined) signals.push(req.signal);
      if (req.scorePrompt !== true) {
        onToken(token(0, 4));
        return done([4]);
      }
      return aborted(req.signal);
    };
    const ac = new AbortController();
    const gone = stream({ max_tokens: 1 }, ac.signal).catch(() => 'aborted');
    await sleep(150);
    ac.abort();
    await gone;
    await sleep(100);
    expect(signals).toHaveLength(N);
    expect(signals.every((s) => s.aborted)).toBe(true);
    // The N slots are free again.
    script = async (req, onToken, onScored) => {
      if (req.scorePrompt === true) scoreAll(onScored);
      onToken(token(0, 4));
      return done([4]);
    };
    const again = await stream({ max_tokens: 1 });
    expect(again.status).toBe(200);
    expect(again.events.filter((e) => e.finish === 'length')).toHaveLength(N);
  });

  it('choice 0 fails (no route) after the others ended, nothing scored: no token of another choice goes out, an error ends the request', async () => {
    script = async (req, onToken) => {
      if (req.scorePrompt !== true) {
        onToken(token(0, 4));
        return done([4]);
      }
      await sleep(80);
      throw new GenerationError('ERR_NO_ROUTE', 'no route');
    };
    const t0 = performance.now();
    const { status, events } = await stream({ max_tokens: 1 });
    expect(performance.now() - t0).toBeLessThan(2_000);
    expect(events.filter((e) => e.text !== undefined && e.text !== '')).toEqual([]);
    expect(status === 503 || events.at(-1)?.error !== undefined).toBe(true);
  });

  it('choice 0 fails after scoring and a token, others mid-way: an error event last, the others cancelled', async () => {
    const signals: AbortSignal[] = [];
    script = async (req, onToken, onScored) => {
      if (req.signal !== undefined) signals.push(req.signal);
      if (req.scorePrompt !== true) {
        onToken(token(0, 4));
        return aborted(req.signal);
      }
      scoreAll(onScored);
      onToken(token(0, 6));
      await sleep(50);
      throw new GenerationError('ERR_NO_ROUTE', 'gone');
    };
    const { events } = await stream({ max_tokens: 3 });
    expect(events.at(-1)?.error).toBeDefined();
    await sleep(50);
    expect(signals.every((s) => s.aborted)).toBe(true);
  });
});
