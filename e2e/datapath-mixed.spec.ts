// Tabs on either data path in one swarm (?datapath=main next to
// ?datapath=worker): every connection then joins a page that reads and sends
// frames on its main thread with one that does so in its compute worker, both
// ways. The reference runner's tokens are the oracle; both replicas of each
// stage must agree on every step.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GREEDY } from '../shared/model/sampling.js';
import { type E2eSwarm, startE2eSwarm } from './harness.js';

const STAGES = 3;
const PROMPT = 'It is a truth universally acknowledged, that a single man';
const TOKENS = 16;
/** Tabs fill the stages in order (0, 1, 2, 0, 1, 2): each stage gets one tab of each path. */
const pathOf = (i: number) => (i % 2 === 0 ? 'main' : 'worker');

let e: E2eSwarm;
beforeAll(async () => {
  e = await startE2eSwarm({ volunteers: STAGES * 2, stages: STAGES, redundancy: 2, dataPathOf: pathOf });
});
afterAll(() => e?.close());

describe(`${STAGES} stages × 2 replicas, one tab of each data path per stage`, () => {
  it('gives the reference runner’s tokens, both replicas of each stage agreeing on every step', async () => {
    const expected = await e.expected(PROMPT, TOKENS, GREEDY);
    const { status, json } = await e.complete({ prompt: PROMPT, max_tokens: TOKENS, temperature: 0 });
    expect(status).toBe(200);
    expect(json.webswarm.tokens).toEqual(expected);
    for (const t of json.webswarm.votes) for (const v of t.votes) expect(v.agreed, `stage ${v.stage}`).toBe(v.replicas);
    const s = await Promise.all(
      e.swarm.pages.map((p) =>
        p.evaluate(() => ({
          path: window.webswarmVolunteer?.dataPath,
          moved: window.webswarmVolunteer?.channelsMoved,
          steps: window.webswarmVolunteer?.stepsComputed ?? 0,
        })),
      ),
    );
    s.forEach((x, i) => {
      expect(x.path, `tab ${i}`).toBe(pathOf(i));
      if (pathOf(i) === 'worker') expect(x.moved, `tab ${i}`).toBeGreaterThan(0);
      else expect(x.moved, `tab ${i}`).toBe(0);
      expect(x.steps, `tab ${i}`).toBeGreaterThanOrEqual(TOKENS);
    });
  });
});
