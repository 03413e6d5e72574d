// Hostile bytes into stage 0's token vote (the mesh loop): a last-stage
// volunteer tab that computes honestly (its tokens count) but also sends raw
// token frames of its choosing on both channels of its connections to the
// stage-0 tabs, one of each data path: under the other last-stage replica's
// index, for steps out of reach, in other eras, malformed; and to the stage-1
// tabs it is linked to (it is their `next`, not in their `prev`) stage 0's
// frames under both indexes. Real Chromium tabs, a real server on port 0; the
// reference runner's tokens are the oracle. The rest of the data path's
// hostile cases are in hostile-frames.spec.ts.
import { describe, expect, it } from 'vitest';
import { GREEDY } from '../shared/model/sampling.js';
import { expectUnanimous, hostileSwarm, more, seen } from './hostile-status.js';

const PROMPT = 'Emma Woodhouse, handsome, clever, and rich,';
const TOKENS = 32;
/** Tabs fill the stages in order (0, 1, 2, 0, 1, 2): tab 2 (last stage, main-thread path) is the hostile one. */
const HOSTILE = 2;
const pathOf = (i: number) => (i === 0 || i === 1 || i === 5 ? 'worker' : 'main');

const rig = hostileSwarm(HOSTILE, pathOf);

describe("a hostile last-stage volunteer sends raw token frames into stage 0's vote", () => {
  it('forged, out-of-reach and malformed tokens are refused by name on both paths; the reference tokens, unanimous, the honest replica kept', async () => {
    const s = await seen(rig.e.swarm.pages);
    expect(s.map((x) => x.stage)).toEqual([0, 1, 2, 0, 1, 2]);
    expect(s.map((x) => x.dataPath)).toEqual(s.map((x) => pathOf(x.index)));
    const honestLast = s[5]?.volunteerId;
    const expected = await rig.e.expected(PROMPT, TOKENS, GREEDY);
    const generation = rig.e.complete({ prompt: PROMPT, max_tokens: TOKENS, temperature: 0 });
    const attack = rig.hostile.evaluate(async (vocab) => {
      const h = window.__hostile;
      if (h === undefined) throw new Error('no hooks');
      const until = performance.now() + 60_000;
      // Its own token frames to stage 0 say the session, the step, the era and its index.
      const current = () => h.to(2).find((l) => l.sent !== null && l.sent.step >= 3)?.sent ?? null;
      while (current() === null) {
        if (performance.now() > until) {
          // What this tab saw, for a run where it never did (once in CI on 2026-12-05: a flake not yet understood).
          const links = h.links.map((l) => ({ open: h.channels(l).length, sent: l.sent, received: [...l.received] }));
          throw new Error(`the generation never reached step 3 here: ${h.sentSome} frames sent; links ${JSON.stringify(links)}`);
        }
        await new Promise((r) => setTimeout(r, 10));
      }
      const first = current();
      if (first === null) throw new Error('unreachable');
      const { sessionId, era, replica } = first;
      const other = 1 - replica; // the honest last-stage replica: its index, forged
      const t = (o: { step: number; token?: number; replica?: number; era?: number; dims?: number[] }) =>
        h.chunk({
          sessionId,
          stage: 2,
          replica: o.replica ?? replica,
          era: o.era ?? era,
          step: o.step,
          dims: o.dims ?? [1],
          fill: o.token ?? 5,
        });
      let rounds = 0;
      for (
        let now: typeof first | null = first;
        now !== null && now.sessionId === sessionId && performance.now() < until;
        now = current()
      ) {
        const step = now.step;
        const toStageZero: ArrayBuffer[] = [
          // The other replica's index on the next steps: counted, a forged token would stand for the honest replica's.
          ...[1, 2, 3].map((k) => t({ step: step + k, replica: other, token: 7 })),
          t({ step: step + 100 }), // beyond reach
          t({ step: 0 }), // the prompt's step
          t({ step: step + 1, era: (era + 255) & 0xff }), // an era since rolled back
          t({ step: step + 1, era: (era + 1) & 0xff }), // an era to come
          t({ step: step + 1, dims: [2] }), // two values
          t({ step: step + 1, token: 1.5 }),
          t({ step: step + 1, token: vocab }),
          t({ step: step + 1, token: -1 }),
        ];
        // Stage 0's frames to stage 1, under both indexes: this tab is stage 1's next, not in its prev.
        const toStageOne: ArrayBuffer[] = [0, 1, 2, 3, 4].flatMap((k) =>
          [0, 1].map((r) => h.chunk({ sessionId, stage: 0, replica: r, era, step: step + k, fill: 1e30 })),
        );
        for (const l of h.to(2)) for (const dc of h.channels(l)) await h.pour(dc, toStageZero);
        for (const l of h.from(1)) for (const dc of h.channels(l)) await h.pour(dc, toStageOne);
        rounds += 1;
        await new Promise((r) => setTimeout(r, 30));
        if (performance.now() - (current()?.at ?? 0) > 1500) break;
      }
      return { rounds, stageZero: h.to(2).length, stageOne: h.from(1).length };
    }, 2048);
    const [{ status, json }, counts] = await Promise.all([generation, attack]);
    expect(status).toBe(200);
    expect(json.webswarm.tokens).toEqual(expected);
    expectUnanimous(json);
    expect(counts.rounds).toBeGreaterThan(0);
    expect(counts).toMatchObject({ stageZero: 2, stageOne: 2 });
    // Each stage-0 tab refused them by name: the impersonation, the out-of-reach and other-era ones, the malformed ones.
    await expect
      .poll(
        async () =>
          (await seen(rig.e.swarm.pages))
            .filter((x) => x.stage === 0)
            .map((x) => ['ERR_NOT_LINKED', 'ERR_STALE_STEP', 'ERR_FRAME_SHAPE', 'ERR_BAD_TOKEN'].map((c) => more(x, s, c) > 0)),
        { timeout: 30_000, interval: 250 },
      )
      .toEqual([
        [true, true, true, true],
        [true, true, true, true],
      ]);
    // Stage 1 kept stage 0's forged frames aside (the route may yet name their sender) until too many waited.
    await expect
      .poll(async () => (await seen(rig.e.swarm.pages)).filter((x) => x.stage === 1).map((x) => more(x, s, 'ERR_NOT_LINKED') > 0), {
        timeout: 30_000,
        interval: 250,
      })
      .toEqual([true, true]);
    for (const x of await seen(rig.e.swarm.pages)) expect(x.state, `tab ${x.index}`).toBe('ready');
    // The honest last-stage replica was not taken for a liar: it is in the next route, and the tokens are exact again.
    const again = await rig.e.complete({ prompt: PROMPT, max_tokens: 16, temperature: 0 });
    expect(again.json.webswarm.tokens).toEqual(expected.slice(0, 16));
    expect(again.json.webswarm.route[2]).toContain(honestLast);
    expectUnanimous(again.json);
  });
});
