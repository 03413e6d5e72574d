// A volunteer's tab closes mid-generation: a spare of its stage takes its
// place, rebuilds its KV cache from the agreed inputs, and the answer is the
// reference runner's, token for token.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GREEDY } from '../shared/model/sampling.js';
import { FAULT_AFTER_STEPS } from '../shared/swarm/faults.js';
import { ensureStages } from '../signal-server/models/model-folder.js';
import { ReferenceRunner } from '../signal-server/reference/reference-runner.js';
import type { SignalServer } from '../signal-server/server.js';
import { GOLDEN_MODELS } from '../signal-server/testing/golden.js';
import { type LocalSwarm, startLocalSwarm } from '../tools/local-swarm.js';
import { startTestServer } from './harness.js';

const MODEL = existsSync(GOLDEN_MODELS['austen-2m'] as string) ? 'austen-2m' : 'tiny-gqa-bias';
const STAGES = 3;
const REDUNDANCY = 3;
/** Volunteers fill stages 0, 1, 2, 0, …: index 4 is in stage 1's route, index 10 is stage 1's spare. */
const CRASHING = 4;
const SPARE = 10;
const PROMPT = 'Emma Woodhouse, handsome, clever, and rich,';
const TOKENS = 16;

let cache: string;
let server: SignalServer;
let swarm: LocalSwarm;
let reference: ReferenceRunner;

beforeAll(async () => {
  cache = mkdtempSync(join(tmpdir(), 'webswarm-failover-'));
  const dir = GOLDEN_MODELS[MODEL] as string;
  server = await startTestServer([{ dir, stages: STAGES }], cache, { redundancy: REDUNDANCY, allowFaults: true });
  reference = await ReferenceRunner.fromStageDir((await ensureStages(dir, { stages: STAGES }, cache)).dir);
  swarm = await startLocalSwarm({
    serverUrl: server.address().url,
    volunteers: SPARE + 1,
    faultOf: (i) => (i === CRASHING ? 'crash' : null),
  });
});

afterAll(async () => {
  await swarm?.close();
  await reference?.close();
  await server?.close();
  rmSync(cache, { recursive: true, force: true });
});

describe('a tab closes mid-generation', () => {
  it('a spare takes over and the tokens do not change', async () => {
    const crashing = await swarm.pages[CRASHING]?.evaluate(() => window.webswarmVolunteer);
    const spare = await swarm.pages[SPARE]?.evaluate(() => window.webswarmVolunteer);
    expect(crashing?.stage).toBe(1);
    expect(spare?.stage).toBe(1);
    const expected = (await reference.generateIds(reference.tokenizer.encode(PROMPT), TOKENS, GREEDY)).tokens;
    const res = await fetch(`${server.address().url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: PROMPT, max_tokens: TOKENS, temperature: 0 }),
    });
    const json = (await res.json()) as { webswarm: { tokens: number[]; route: string[][] } };
    expect(res.status).toBe(200);
    expect(json.webswarm.tokens).toEqual(expected);
    // The route as it ended: the spare in the crashed tab's place.
    expect(json.webswarm.route[1]).toContain(spare?.volunteerId);
    expect(json.webswarm.route[1]).not.toContain(crashing?.volunteerId);
    const after = await swarm.pages[SPARE]?.evaluate(() => window.webswarmVolunteer);
    expect(after?.stepsComputed).toBe(TOKENS);
    expect(FAULT_AFTER_STEPS).toBeLessThan(TOKENS);
  });
});
