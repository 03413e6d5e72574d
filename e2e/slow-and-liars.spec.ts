// A slow replica in one stage and two liars (that disagree with each other) in
// another, with two spares ready: the slow one is never waited for, the stage
// without a majority is retried on the spares, and the answer is the
// reference runner's, token for token.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GREEDY } from '../shared/model/sampling.js';
import type { FaultKind } from '../shared/swarm/faults.js';
import { ensureStages } from '../signal-server/models/model-folder.js';
import { ReferenceRunner } from '../signal-server/reference/reference-runner.js';
import type { SignalServer } from '../signal-server/server.js';
import { GOLDEN_MODELS } from '../signal-server/testing/golden.js';
import { type LocalSwarm, startLocalSwarm } from '../tools/local-swarm.js';
import { startTestServer } from './harness.js';

const MODEL = existsSync(GOLDEN_MODELS['austen-2m'] as string) ? 'austen-2m' : 'tiny-gqa-bias';
const STAGES = 3;
const REDUNDANCY = 3;
/**
 * Volunteers fill the emptiest stage: 0 1 2 0 1 2 0 1 2 | 0 1 2 0 1. The route
 * takes the first three of each stage; 10 and 13 are stage 1's spares.
 */
const SLOW = 3; // stage 0
const LIARS = [4, 7]; // stage 1
const SPARES = [10, 13]; // stage 1
const VOLUNTEERS = 14;
const PROMPT = 'Emma Woodhouse, handsome, clever, and rich,';
const TOKENS = 16;

let cache: string;
let server: SignalServer;
let swarm: LocalSwarm;
let reference: ReferenceRunner;

function faultOf(i: number): FaultKind | null {
  if (i === SLOW) return 'slow';
  return LIARS.includes(i) ? 'noise' : null;
}

beforeAll(async () => {
  cache = mkdtempSync(join(tmpdir(), 'webswarm-slow-liars-'));
  const dir = GOLDEN_MODELS[MODEL] as string;
  server = await startTestServer([{ dir, stages: STAGES }], cache, { redundancy: REDUNDANCY, allowFaults: true });
  reference = await ReferenceRunner.fromStageDir((await ensureStages(dir, { stages: STAGES }, cache)).dir);
  swarm = await startLocalSwarm({ serverUrl: server.address().url, volunteers: VOLUNTEERS, faultOf });
});

afterAll(async () => {
  await swarm?.close();
  await reference?.close();
  await server?.close();
  rmSync(cache, { recursive: true, force: true });
});

describe('a slow replica and a stage without an honest majority', () => {
  it('retries the stage on spares, never waits for the slow one, and gives the reference tokens', async () => {
    const status = (i: number) => swarm.pages[i]?.evaluate(() => window.webswarmVolunteer);
    const spareIds = await Promise.all(SPARES.map(async (i) => (await status(i))?.volunteerId));
    for (const i of [...LIARS, ...SPARES]) expect((await status(i))?.stage).toBe(1);
    expect((await status(SLOW))?.stage).toBe(0);
    const expected = (await reference.generateIds(reference.tokenizer.encode(PROMPT), TOKENS, GREEDY)).tokens;
    const res = await fetch(`${server.address().url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: PROMPT, max_tokens: TOKENS, temperature: 0 }),
    });
    // Read the slow replica's progress the moment the answer is in.
    const slowSteps = (await status(SLOW))?.stepsComputed ?? TOKENS;
    const json = (await res.json()) as { webswarm: { tokens: number[]; route: string[][] } };
    expect(res.status).toBe(200);
    expect(json.webswarm.tokens).toEqual(expected);
    // The two spares took the liars' places in stage 1.
    for (const id of spareIds) expect(json.webswarm.route[1]).toContain(id);
    // 1 s a step: had the swarm waited for it, it would have finished every step.
    expect(slowSteps).toBeLessThan(TOKENS);
  });
});
