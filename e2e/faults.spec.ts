// Lying volunteers in real tabs: one noisy replica in every stage of a
// 3 × 3 swarm (a test-mode server accepts fault injection). The answer must be
// the reference runner's; the liars lose reputation and are evicted.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GREEDY } from '../shared/model/sampling.js';
import { EVICT_AFTER_DISAGREEMENTS } from '../signal-server/coordinator/reputation.js';
import { ensureStages } from '../signal-server/models/model-folder.js';
import { ReferenceRunner } from '../signal-server/reference/reference-runner.js';
import type { SignalServer } from '../signal-server/server.js';
import { GOLDEN_MODELS } from '../signal-server/testing/golden.js';
import { type LocalSwarm, startLocalSwarm } from '../tools/local-swarm.js';
import { startTestServer } from './harness.js';

const MODEL = existsSync(GOLDEN_MODELS['austen-2m'] as string) ? 'austen-2m' : 'tiny-gqa-bias';
const STAGES = 3;
const REDUNDANCY = 3;
const PROMPT = '"My dear Mr. Bennet," said his lady to him one day,';
const TOKENS = 16;

let cache: string;
let server: SignalServer;
let swarm: LocalSwarm;
let reference: ReferenceRunner;

beforeAll(async () => {
  cache = mkdtempSync(join(tmpdir(), 'webswarm-faults-'));
  const dir = GOLDEN_MODELS[MODEL] as string;
  server = await startTestServer([{ dir, stages: STAGES }], cache, { redundancy: REDUNDANCY, allowFaults: true });
  reference = await ReferenceRunner.fromStageDir((await ensureStages(dir, { stages: STAGES }, cache)).dir);
  // Volunteers fill stages 0, 1, 2, 0, …: the first three are one liar per stage.
  swarm = await startLocalSwarm({
    serverUrl: server.address().url,
    volunteers: STAGES * REDUNDANCY,
    faultOf: (i) => (i < STAGES ? 'noise' : null),
  });
});

afterAll(async () => {
  await swarm?.close();
  await reference?.close();
  await server?.close();
  rmSync(cache, { recursive: true, force: true });
});

interface SwarmListing {
  list: { id: string; stage: number; agreed: number; disagreed: number }[];
}

describe('one noisy replica in every stage', () => {
  it('does not change a token; each liar loses reputation, is evicted, and is refused when it comes back', async () => {
    const liars = await Promise.all(swarm.pages.slice(0, STAGES).map((p) => p.evaluate(() => window.webswarmVolunteer?.volunteerId)));
    const expected = (await reference.generateIds(reference.tokenizer.encode(PROMPT), TOKENS, GREEDY)).tokens;
    const res = await fetch(`${server.address().url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: PROMPT, max_tokens: TOKENS, temperature: 0 }),
    });
    const json = (await res.json()) as { webswarm: { tokens: number[]; route: string[][] } };
    expect(res.status).toBe(200);
    expect(json.webswarm.tokens).toEqual(expected);
    for (const [stage, id] of liars.entries()) expect(json.webswarm.route[stage]).toContain(id);
    // Each liar disagreed with its stage's majority step after step, and was evicted.
    for (const page of swarm.pages.slice(0, STAGES)) {
      await page.waitForFunction(() => window.webswarmVolunteer?.state === 'evicted', null, { timeout: 30_000 });
      const status = await page.evaluate(() => window.webswarmVolunteer);
      expect(status?.score?.disagreed).toBeGreaterThanOrEqual(EVICT_AFTER_DISAGREEMENTS);
      expect(status?.score?.reputation).toBeLessThan(0.5);
    }
    const listing = ((await (await fetch(`${server.address().url}/api/swarm`)).json()) as SwarmListing).list;
    expect(listing.some((v) => liars.includes(v.id))).toBe(false);
    expect(listing).toHaveLength(STAGES * (REDUNDANCY - 1));
    expect(listing.every((v) => v.disagreed === 0 && v.agreed > 0)).toBe(true);
    // An evicted volunteer that comes back (same browser, same key) is refused.
    const liarPage = swarm.pages[0];
    await liarPage?.reload();
    await liarPage?.waitForFunction(() => window.webswarmVolunteer?.state === 'evicted', null, { timeout: 30_000 });
    expect(await liarPage?.evaluate(() => window.webswarmVolunteer?.lastError)).toMatch(/ERR_BANNED/);
  });
});
