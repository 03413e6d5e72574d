// The data path in the compute worker (?datapath=worker): data channels are
// transferred to the worker as they open, and the ReplicaCore there votes,
// computes and sends onward without the main thread. Real Chromium tabs, a
// real server on port 0; the reference runner's tokens are the oracle.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GREEDY } from '../shared/model/sampling.js';
import { type E2eSwarm, startE2eSwarm } from './harness.js';

const STAGES = 3;
const PROMPT = 'It is a truth universally acknowledged, that a single man';
const TOKENS = 16;

interface PathStatus {
  readonly dataPath: 'main' | 'worker';
  readonly channelsMoved: number;
  readonly channelsKept: number;
  readonly stepsComputed: number;
}

let e: E2eSwarm;
beforeAll(async () => {
  e = await startE2eSwarm({ volunteers: STAGES * 2, stages: STAGES, redundancy: 2, dataPath: 'worker' });
});
afterAll(() => e?.close());

const statuses = () =>
  Promise.all(
    e.swarm.pages.map((p) =>
      p.evaluate(() => {
        const s = window.webswarmVolunteer;
        return s === undefined
          ? null
          : { dataPath: s.dataPath, channelsMoved: s.channelsMoved, channelsKept: s.channelsKept, stepsComputed: s.stepsComputed };
      }),
    ),
  );

describe(`${STAGES} stages × 2 replicas with the data path in the compute worker`, () => {
  it('gives the reference runner’s tokens, every step voted, with the channels in the workers', async () => {
    const expected = await e.expected(PROMPT, TOKENS, GREEDY);
    const { status, json } = await e.complete({ prompt: PROMPT, max_tokens: TOKENS, temperature: 0 });
    expect(status).toBe(200);
    expect(json.webswarm.tokens).toEqual(expected);
    for (const t of json.webswarm.votes) for (const v of t.votes) expect(v.agreed * 2, `stage ${v.stage}`).toBeGreaterThan(v.replicas);
    const s = (await statuses()).filter((x): x is PathStatus => x !== null);
    expect(s).toHaveLength(STAGES * 2);
    for (const x of s) expect(x.dataPath).toBe('worker');
    // Every tab has neighbours, and each frames channel went to its worker in the task that created it.
    for (const x of s) {
      expect(x.channelsMoved).toBeGreaterThan(0);
      expect(x.channelsKept).toBe(0);
      expect(x.stepsComputed).toBeGreaterThanOrEqual(TOKENS); // one step per token (the mesh loop may run one more)
    }
  });

  it('gives the same tokens again on a second generation (channels kept in the workers are reused)', async () => {
    const sampling = { temperature: 0.8, topK: 0, topP: 0.95, seed: 7 };
    const expected = await e.expected(PROMPT, TOKENS, sampling);
    const { json } = await e.complete({ prompt: PROMPT, max_tokens: TOKENS, temperature: 0.8, top_p: 0.95, seed: 7 });
    expect(json.webswarm.tokens).toEqual(expected);
  });
});
