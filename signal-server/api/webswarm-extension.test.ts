// The `webswarm` field of the API's answers, in the shape README's API
// section gives it, through a real server on port 0 and real-protocol Node
// volunteers (2 stages × r = 2): each streamed token's chunk, the stream's
// last chunk, and a whole response.
import { describe, expect, it } from 'vitest';
import { httpSwarm, PROMPT, WAIT_MS } from '../testing/http-swarm.js';

const { start, volunteer, readyCount } = httpSwarm('webswarm-extension');
const TOKENS = 4;
const TEST_MS = 120_000;

const VOTE_KEYS = ['agreed', 'disagreed', 'missing', 'replicas', 'server', 'stage'];

describe('the webswarm extension', () => {
  it(
    'every token carries {index, token, verified, votes, server_stages, step_ms}; a whole answer its redundancy, verdict, prompt and token ids, route and votes',
    async () => {
      const { url } = await start(2, 2);
      for (let i = 0; i < 4; i++) volunteer(url, `127.0.0.${60 + i}`);
      await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(4);
      const body = { prompt: PROMPT, max_tokens: TOKENS, temperature: 0 };
      const post = (extra: object) =>
        fetch(`${url}/v1/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ ...body, ...extra }),
        });

      const whole = (await (await post({})).json()) as { webswarm: Record<string, unknown> };
      const w = whole.webswarm;
      expect(Object.keys(w).sort()).toEqual([
        'prompt_tokens',
        'redundancy',
        'route',
        'seed',
        'server_stages',
        'tokens',
        'verified',
        'votes',
      ]);
      // The sampler's seed: the one given, or one drawn for the request (another each time).
      expect(Number.isInteger(w.seed)).toBe(true);
      const seedOf = async (extra: object) => ((await (await post(extra)).json()) as { webswarm: { seed: number } }).webswarm.seed;
      expect(await seedOf({ seed: 2 ** 32 + 5 })).toBe(5);
      expect(new Set([w.seed, await seedOf({}), await seedOf({})]).size).toBeGreaterThan(1);
      expect(w.redundancy).toBe(2);
      expect(w.verified).toBe(true);
      expect(w.tokens).toHaveLength(TOKENS);
      expect((w.route as string[][]).map((s) => s.length)).toEqual([2, 2]);
      const votes = w.votes as { index: number; votes: Record<string, unknown>[] }[];
      expect(votes.map((v) => v.index)).toEqual([0, 1, 2, 3]);
      for (const v of votes) for (const stage of v.votes) expect(Object.keys(stage).sort()).toEqual(VOTE_KEYS);

      const text = await (await post({ stream: true })).text();
      const events = text
        .split('\n\n')
        .filter((e) => e.startsWith('data: {'))
        .map((e) => JSON.parse(e.slice('data: '.length)) as { webswarm?: Record<string, unknown> })
        .map((e) => e.webswarm);
      // A chunk without one only flushes text held back (a character's bytes split over tokens), after the last token's.
      const perToken = events.filter((e): e is Record<string, unknown> => e !== undefined && 'token' in e);
      expect(perToken).toHaveLength(TOKENS);
      for (const [i, e] of perToken.entries()) {
        expect(Object.keys(e).sort()).toEqual(['index', 'server_stages', 'step_ms', 'token', 'verified', 'votes']);
        expect(e.index).toBe(i);
        expect(e.token).toBe((w.tokens as number[])[i]);
        expect(typeof e.step_ms).toBe('number');
        for (const stage of e.votes as Record<string, unknown>[]) expect(Object.keys(stage).sort()).toEqual(VOTE_KEYS);
      }
      // The stream's last chunk carries the answer's summary: its verdict, route and server stages.
      const last = events.at(-1) as Record<string, unknown>;
      expect(Object.keys(last).sort()).toEqual(['redundancy', 'route', 'seed', 'server_stages', 'verified']);
      // (Each request draws its own route.)
      expect(last).toMatchObject({ redundancy: 2, verified: true, server_stages: [] });
      expect((last.route as string[][]).map((r) => r.length)).toEqual([2, 2]);
    },
    TEST_MS,
  );
});
