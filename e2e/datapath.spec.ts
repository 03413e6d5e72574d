// The two data paths in one swarm: tabs that read and send frames in their
// compute worker (?datapath=worker, the default: data channels are transferred
// to the worker as they open, and the ReplicaCore there votes, computes and
// sends onward without the main thread) next to tabs that do so on their main
// thread (?datapath=main). Tabs fill the stages in order (0, 1, 2, 0, 1, 2) and
// alternate paths, so the links between two stages join main to main, main to
// worker, worker to main and worker to worker. Real Chromium tabs, a real
// server on port 0; the reference runner's tokens are the oracle, and both
// replicas of each stage must agree on every step.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GREEDY } from '../shared/model/sampling.js';
import { type E2eSwarm, startE2eSwarm } from './harness.js';

const STAGES = 3;
const PROMPT = 'It is a truth universally acknowledged, that a single man';
const TOKENS = 16;
const pathOf = (i: number) => (i % 2 === 0 ? 'main' : 'worker');

interface PathStatus {
  readonly dataPath: 'main' | 'worker' | undefined;
  readonly channelsMoved: number;
  readonly channelsKept: number;
  readonly stepsComputed: number;
}

let e: E2eSwarm;
beforeAll(async () => {
  e = await startE2eSwarm({ volunteers: STAGES * 2, stages: STAGES, redundancy: 2, dataPathOf: pathOf });
});
afterAll(() => e?.close());

const statuses = (): Promise<PathStatus[]> =>
  Promise.all(
    e.swarm.pages.map((p) =>
      p.evaluate(() => {
        const s = window.webswarmVolunteer;
        return {
          dataPath: s?.dataPath,
          channelsMoved: s?.channelsMoved ?? -1,
          channelsKept: s?.channelsKept ?? -1,
          stepsComputed: s?.stepsComputed ?? 0,
        };
      }),
    ),
  );

describe(`${STAGES} stages × 2 replicas, one tab of each data path per stage`, () => {
  let first: PathStatus[] = [];

  it('gives the reference runner’s tokens, both replicas of each stage agreeing on every step, each frames channel on its path', async () => {
    const expected = await e.expected(PROMPT, TOKENS, GREEDY);
    const { status, json } = await e.complete({ prompt: PROMPT, max_tokens: TOKENS, temperature: 0 });
    expect(status).toBe(200);
    expect(json.webswarm.tokens).toEqual(expected);
    for (const t of json.webswarm.votes) for (const v of t.votes) expect(v.agreed, `stage ${v.stage}`).toBe(v.replicas);
    first = await statuses();
    expect(first).toHaveLength(STAGES * 2);
    first.forEach((x, i) => {
      expect(x.dataPath, `tab ${i}`).toBe(pathOf(i));
      // A worker tab's every frames channel went to its worker in the task that created it, and none was refused.
      if (pathOf(i) === 'worker') expect([x.channelsMoved > 0, x.channelsKept], `tab ${i}`).toEqual([true, 0]);
      else expect(x.channelsMoved, `tab ${i}`).toBe(0);
      expect(x.stepsComputed, `tab ${i}`).toBeGreaterThanOrEqual(TOKENS); // one step per token (the mesh loop may run one more)
    });
  });

  it('gives the seeded reference tokens on a second generation, over the channels the first opened', async () => {
    const sampling = { temperature: 0.8, topK: 0, topP: 0.95, seed: 7 };
    const expected = await e.expected(PROMPT, TOKENS, sampling);
    const { status, json } = await e.complete({ prompt: PROMPT, max_tokens: TOKENS, temperature: 0.8, top_p: 0.95, seed: 7 });
    expect(status).toBe(200);
    expect(json.webswarm.tokens).toEqual(expected);
    for (const t of json.webswarm.votes) for (const v of t.votes) expect(v.agreed, `stage ${v.stage}`).toBe(v.replicas);
    const again = await statuses();
    again.forEach((x, i) => {
      // No channel moved or kept anew: the workers' channels were reused.
      expect([x.channelsMoved, x.channelsKept], `tab ${i}`).toEqual([first[i]?.channelsMoved, first[i]?.channelsKept]);
      expect(x.stepsComputed, `tab ${i}`).toBeGreaterThanOrEqual((first[i]?.stepsComputed ?? 0) + TOKENS);
    });
  });
});
