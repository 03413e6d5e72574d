// The data path of a token with real stages, real onnxruntime sessions, real
// replicas (ReplicaCore, the same code the volunteer page runs) and the real
// coordinator (its challenges, routes, fail-over and eviction), joined in one process: frames and reports are passed
// by direct calls instead of WebRTC and Socket.IO, which the e2e tests cover.
// This is where lying and vanishing replicas are tested quickly and seeded.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GREEDY, seededRandom } from '../../shared/model/sampling.js';
import { type FaultBehaviour, type FaultKind, faultBehaviour, SLOW_DELAY_MS } from '../../shared/swarm/faults.js';
import type { ReferenceRunner } from '../reference/reference-runner.js';
import { closeGoldenSwarm, type GoldenSwarm, startGoldenSwarm } from '../testing/golden-swarm.js';
import {
  type Crash,
  createInProcessSwarm,
  type InProcessSwarm,
  releaseInProcessSwarm,
  runInProcess,
  type Wire,
} from '../testing/in-process-swarm.js';
import { SCORE_EVERY_MS } from './roster.js';

const STAGES = 3;
const R = 3;
const TOKENS = 10;
const TIMEOUTS = { joinMs: 5_000, stepMs: 10_000 };

let golden: GoldenSwarm | undefined;
let swarm: InProcessSwarm;
let stageBytes: readonly Uint8Array[];
let reference: ReferenceRunner;
let promptIds: number[];
let expected: number[];

beforeAll(async () => {
  golden = await startGoldenSwarm('webswarm-gen-', { stages: STAGES, r: R, tokens: TOKENS, timeouts: TIMEOUTS });
  ({ swarm, stageBytes, reference, promptIds, expected } = golden);
});

afterAll(() => closeGoldenSwarm(golden));

function fault(kind: FaultKind, seed = 1): FaultBehaviour {
  return faultBehaviour(kind, seed);
}

function runSwarm(faults: Record<string, FaultBehaviour> = {}, silent: string[] = [], crash: Crash | null = null) {
  return runInProcess(swarm, promptIds, TOKENS, faults, silent, crash);
}

/** Seeds the data-channel fuzzer always runs. */
const PINNED_FUZZ_SEEDS = [424242, 7, 31337];
/**
 * Seeds that once found a bug: add one here (with a comment naming the bug)
 * when a fuzzer run fails, so that it is run from then on.
 */
const REGRESSION_FUZZ_SEEDS: number[] = [];
const DATA_CHANNEL_FUZZ_SEEDS = [...PINNED_FUZZ_SEEDS, ...REGRESSION_FUZZ_SEEDS];
/**
 * Hostile messages sent along with each genuine one: a generation here carries
 * 180 genuine frames, so a seed sends 1 800 (the one seed of old sent 40 a frame).
 */
const HOSTILE_PER_FRAME = 10;
const MIN_HOSTILE_PER_SEED = 1_000;

/**
 * A wire that mixes junk, forged, replayed and truncated frames into every
 * genuine one. A data channel authenticates its peer (DTLS), so nobody can send
 * as another peer: forged frames come from strangers (not linked to the
 * receiver), while the genuine sender's channel also carries junk, truncated
 * copies and replays.
 */
function hostileWire(seed: number): {
  wire: Wire;
  counts: { junk: number; forgedByStrangers: number; replayed: number; truncated: number };
} {
  const r = seededRandom(seed);
  const counts = { junk: 0, forgedByStrangers: 0, replayed: 0, truncated: 0 };
  const seen: Uint8Array[] = [];
  const wire: Wire = (from, to, bytes) => {
    const out = [{ from, bytes }];
    seen.push(bytes);
    const strangers = ['mallory', to];
    for (let k = 0; k < HOSTILE_PER_FRAME; k++) {
      const pick = Math.floor(r() * 4);
      if (pick === 0) {
        counts.junk++;
        out.push({ from, bytes: Uint8Array.from({ length: Math.floor(r() * 300) }, () => Math.floor(r() * 256)) });
      } else if (pick === 1) {
        // A valid frame re-labelled (session, step, stage or replica), sent by a stranger.
        counts.forgedByStrangers++;
        const f = bytes.slice();
        const v = new DataView(f.buffer);
        const field = Math.floor(r() * 4);
        if (field === 0) v.setUint32(8, v.getUint32(8, true) + 1, true);
        if (field === 1) v.setUint32(12, v.getUint32(12, true) + Math.floor(r() * 3), true);
        if (field === 2) v.setUint16(16, Math.floor(r() * 4), true);
        if (field === 3) v.setUint16(18, Math.floor(r() * 3), true);
        out.push({ from: strangers[Math.floor(r() * strangers.length)] as string, bytes: f });
      } else if (pick === 2) {
        counts.replayed++;
        out.push({ from, bytes: seen[Math.floor(r() * seen.length)] as Uint8Array });
      } else {
        counts.truncated++;
        out.push({ from, bytes: bytes.slice(0, Math.floor(r() * bytes.length)) });
      }
    }
    return out.reverse();
  };
  return { wire, counts };
}

describe('a generation through replicas', () => {
  it.each<[FaultKind, string]>([
    ['nan', 's1r2'],
    ['wrong-shape', 's0r0'],
    ['wrong-shape', 's2r1'],
    ['stale', 's1r1'],
    ['wrong-token', 's2r0'],
    ['silent', 's2r2'],
    ['slow', 's1r0'],
  ])('a %s replica (%s) does not change a token', async (kind, who) => {
    const r = await runSwarm({ [who]: fault(kind) });
    expect(r.error).toBeNull();
    expect(r.tokens).toEqual(expected);
  });

  it('honest replicas give the reference tokens, all agreeing', async () => {
    const r = await runSwarm();
    expect(r.error).toBeNull();
    expect(r.tokens).toEqual(expected);
    for (const v of r.votes) for (const agreed of v) expect(agreed).toBeGreaterThanOrEqual(2);
    expect(r.audit.get('s1r2')).toEqual({ agreed: TOKENS, disagreed: 0 });
  });

  it('tells an agreeing volunteer its score at most once a second, and the newest before the server goes', async () => {
    const r = await runSwarm();
    expect(r.tokens).toEqual(expected);
    // Before: one score a vote, TOKENS of them. Now the first at once, then one a SCORE_EVERY_MS, and the one
    // held back when the swarm shuts down (runInProcess's end).
    const most = 2 + Math.ceil(r.totalMs / SCORE_EVERY_MS);
    expect(most).toBeLessThan(TOKENS);
    for (const id of ['s0r0', 's1r2', 's2r1']) {
      expect(r.scoreMessages.get(id)).toBeLessThanOrEqual(most);
      expect(r.scores.get(id)).toEqual({ agreed: TOKENS, disagreed: 0 });
    }
  });

  it.each([0, 1, 2])('one noisy replica in stage %i is outvoted and shows in the audit', async (stage) => {
    const liar = `s${stage}r1`;
    const r = await runSwarm({ [liar]: fault('noise', stage + 1) });
    expect(r.error).toBeNull();
    expect(r.tokens).toEqual(expected);
    // It was told its score: disagreements only, until the coordinator evicted it and a spare took its place.
    expect(r.scores.get(liar)?.disagreed).toBeGreaterThan(0);
    // A disagreement goes out at once, never held back: one score per disagreement counted.
    expect(r.scoreMessages.get(liar)).toBe(r.scores.get(liar)?.disagreed);
    expect(r.scores.get(liar)?.agreed).toBe(0);
    expect(r.evicted.get(liar)).toBe('ERR_EVICTED');
    expect(r.replacements.map((x) => [x.left, x.joined])).toEqual([[liar, `s${stage}spare`]]);
    expect(r.audit.get(`s${stage}r0`)).toEqual({ agreed: TOKENS, disagreed: 0 });
  });

  it('a silent replica does not hold up the steps', async () => {
    const r = await runSwarm({}, ['s1r0']);
    expect(r.error).toBeNull();
    expect(r.tokens).toEqual(expected);
  });

  it.each([0, 1, 2])(
    'a replica of stage %i crashes mid-generation: a spare takes over from the agreed inputs, same tokens',
    async (stage) => {
      const who = `s${stage}r1`;
      const spare = `s${stage}spare`;
      const r = await runSwarm({}, [], { who, afterSteps: 4, spare });
      expect(r.error).toBeNull();
      expect(r.tokens).toEqual(expected);
      expect(r.replacements).toEqual([{ stage, left: who, joined: spare, atStep: expect.any(Number) }]);
      // The spare replayed every step so far to rebuild its KV cache, then went on to the end.
      expect(r.computedBy.get(spare)).toBe(TOKENS);
      expect(r.computedBy.get(who)).toBe(4);
      // Its outputs agreed with the others' from the step it joined.
      expect(r.audit.get(spare).disagreed).toBe(0);
      expect(r.audit.get(spare).agreed).toBeGreaterThan(0);
    },
  );

  it('a crash with no spare: the two that remain still form a majority', async () => {
    const r = await runSwarm({}, [], { who: 's2r0', afterSteps: 3, spare: null });
    expect(r.error).toBeNull();
    expect(r.tokens).toEqual(expected);
  });

  it('a slow replica (SLOW_DELAY_MS, 1 s a step) is not waited for', async () => {
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
    const clean = await runSwarm();
    const slow = await runSwarm({ s1r2: fault('slow') });
    expect(slow.tokens).toEqual(expected);
    // Generous (a loaded machine's noise, 5 × below the delay): the slow replica alone would add 1 s to every step.
    expect(median(slow.stepMs)).toBeLessThan(1.5 * median(clean.stepMs) + SLOW_DELAY_MS / 5);
  });

  it.each(DATA_CHANNEL_FUZZ_SEEDS)(
    'a seeded fuzzer on the data channels (seed %i): over a thousand junk, forged and replayed frames change nothing',
    async (seed) => {
      const { wire, counts } = hostileWire(seed);
      const result = await runInProcess(swarm, promptIds, TOKENS, {}, [], null, GREEDY, wire);
      const total = counts.junk + counts.forgedByStrangers + counts.replayed + counts.truncated;
      process.stdout.write(`data-channel fuzzer, seed ${seed}: ${total} hostile messages ${JSON.stringify(counts)}\n`);
      expect(total).toBeGreaterThan(MIN_HOSTILE_PER_SEED);
      expect(result.error).toBeNull();
      expect(result.tokens).toEqual(expected);
    },
  );

  it('two liars in one stage that disagree with each other, one spare: no majority, no token, a named error', async () => {
    const r = await runSwarm({ s1r0: fault('noise', 11), s1r2: fault('noise', 12) });
    expect(r.error?.code).toBe('ERR_NO_QUORUM');
    expect(r.error?.message).toMatch(/stage 1 did not agree/);
    expect(r.streamed).toEqual([]);
  });

  it('two liars in one stage, two spares: the step is retried on the spares and the tokens are right', async () => {
    const roomy = await createInProcessSwarm(swarm.manifest, stageBytes, R, TIMEOUTS, 2);
    try {
      const r = await runInProcess(roomy, promptIds, TOKENS, { s1r0: fault('noise', 11), s1r2: fault('noise', 12) });
      expect(r.error).toBeNull();
      expect(r.tokens).toEqual(expected);
      expect(r.replacements.map((x) => x.joined).sort()).toEqual(['s1spare', 's1spare2']);
      // s1r0 and the honest s1r1 left for the spares (s1r2 stays, outvoted and evicted): the vote they left without a
      // majority is judged against the retried one (before, neither was counted).
      expect([r.audit.get('s1r0'), r.audit.get('s1r1')]).toEqual([
        { agreed: 0, disagreed: 1 },
        { agreed: 1, disagreed: 0 },
      ]);
      expect(
        r.replacements.filter((x) => x.atStep !== 0 || x.stage !== 1),
        'replacements outside stage 1 at step 0',
      ).toEqual([]);
    } finally {
      await releaseInProcessSwarm(roomy);
    }
  });

  it('a replica that lies at its first compute of a step, stays for the retry and answers honestly after the roll-back: its lie counts', async () => {
    const roomy = await createInProcessSwarm(swarm.manifest, stageBytes, R, TIMEOUTS, 2);
    let outputs = 0;
    // Noise on its first output only: the mesh loop's roll-back has it compute the step again, honestly.
    const once: FaultBehaviour = { output: (_s, d) => (++outputs === 1 ? d.map((v, i) => v + 1 + (i % 5)) : d), delayMs: 0 };
    try {
      const r = await runInProcess(roomy, promptIds, TOKENS, { s1r0: fault('noise', 31), s1r2: once });
      expect(r.error).toBeNull();
      expect(r.tokens).toEqual(expected);
      // s1r0 and s1r1 left for the spares; s1r2 stayed and agreed at every step after.
      expect(r.replacements.map((x) => x.left).sort()).toEqual(['s1r0', 's1r1']);
      // Before: { agreed: TOKENS, disagreed: 0 }, its lie counted nowhere.
      expect(r.audit.get('s1r2')).toEqual({ agreed: TOKENS, disagreed: 1 });
    } finally {
      await releaseInProcessSwarm(roomy);
    }
  });

  it('a replica of a later stage that reported into a vote the retry started again is judged once for the step, by the new vote', async () => {
    const roomy = await createInProcessSwarm(swarm.manifest, stageBytes, R, TIMEOUTS, 2);
    /** Honest, waiting `delay(outputs so far, its last step)` ms before each compute. */
    const delayed = (delay: (outputs: number, last: number) => number): FaultBehaviour => {
      let outputs = 0;
      let last = -1;
      return {
        output: (step, d) => {
          outputs += 1;
          last = step;
          return d;
        },
        get delayMs() {
          return delay(outputs, last);
        },
      };
    };
    /** Reports noise (after `delay` ms at its first step) but sends the next stage its honest frames. */
    const reportsNoise = (seed: number, delay = 0): FaultBehaviour => {
      const honest = new Map<number, Float32Array>();
      let last = -1;
      return {
        output: (step, d) => {
          honest.set(step, d);
          last = step;
          return d.map((v, i) => v + 0.5 + ((i * seed) % 5));
        },
        frames: (step, d) => honest.get(step) ?? d,
        get delayMs() {
          return last < 0 ? delay : 0;
        },
      };
    };
    try {
      const r = await runInProcess({ ...roomy, meshLoop: false }, promptIds, 4, {
        // Stage 1 splits at step 0 once s1r2 reports (1 s): stage 2 has computed by then.
        s1r0: reportsNoise(3),
        s1r2: reportsNoise(7, 1_000),
        // s2r0 reports step 0 at once, into the vote the retry starts again, and its step 0 again 3 s late.
        s2r0: delayed((n) => (n === 1 ? 3_000 : 0)),
        // s2r1 and s2r2 report step 0 only after the retry, and decide it without s2r0.
        s2r1: delayed((_n, last) => (last < 0 ? 1_500 : 0)),
        s2r2: delayed((_n, last) => (last < 0 ? 1_500 : 0)),
      });
      expect(r.error).toBeNull();
      expect(r.tokens).toEqual(expected.slice(0, 4));
      // Its late report of step 0 lands in the new vote.
      await new Promise((res) => setTimeout(res, 4_000));
      // One agreement a step, as its stage's others (before, its old report counted too: 5 of 4 steps).
      expect(r.audit.get('s2r0')).toEqual(r.audit.get('s2r1'));
      expect(r.audit.get('s2r0')).toEqual({ agreed: 4, disagreed: 0 });
    } finally {
      await releaseInProcessSwarm(roomy);
    }
  });

  it('a retry still works when the route update reaches the next stage after the spares’ frames (as over WebRTC)', async () => {
    const roomy = await createInProcessSwarm(swarm.manifest, stageBytes, R, TIMEOUTS, 2);
    try {
      const liars = { s1r0: fault('noise', 21), s1r1: fault('noise', 22) };
      const r = await runInProcess(roomy, promptIds, TOKENS, liars, [], null, GREEDY, null, 200);
      expect(r.error).toBeNull();
      expect(r.tokens).toEqual(expected);
      expect(r.replacements.map((x) => x.joined).sort()).toEqual(['s1spare', 's1spare2']);
    } finally {
      await releaseInProcessSwarm(roomy);
    }
  });
});

describe('a generation against liars inside the rules', () => {
  const SEEDED = { temperature: 1, topK: 0, topP: 1, seed: 7 };

  it('a liar nudging its logits inside the tolerance cannot steer seeded sampling: the reference tokens', async () => {
    const want = (await reference.generateIds(promptIds, TOKENS, SEEDED)).tokens;
    // s2r0 answers first in this swarm: with the first agreeing value taken, its nudge would be sampled from.
    for (const seed of [1, 2, 3]) {
      const r = await runInProcess(swarm, promptIds, TOKENS, { s2r0: fault('nudge', seed) }, [], null, SEEDED);
      expect(r.error).toBeNull();
      expect(r.tokens).toEqual(want);
    }
  });

  it('a nudge inside the tolerance on hidden states changes no token either', async () => {
    const r = await runSwarm({ s0r0: fault('nudge', 5), s1r0: fault('nudge', 6) });
    expect(r.error).toBeNull();
    expect(r.tokens).toEqual(expected);
  });

  it('two colluding stage-0 replicas that send other hidden states than they report are caught at the first step', async () => {
    const roomy = await createInProcessSwarm(swarm.manifest, stageBytes, R, TIMEOUTS, 2);
    try {
      const r = await runInProcess(roomy, promptIds, TOKENS, { s0r0: fault('equivocate'), s0r1: fault('equivocate') });
      expect(r.error).toBeNull();
      expect(r.tokens).toEqual(expected);
      expect(r.equivocators.map((e) => `${e.volunteer}@${e.step}`).sort()).toEqual(['s0r0@0', 's0r1@0']);
      expect(
        r.equivocators.filter((e) => e.step !== 0 || e.stage !== 0),
        'equivocators outside stage 0 at step 0',
      ).toEqual([]);
      // Both were put out of the route at that step, by the spares.
      expect(
        r.replacements
          .filter((x) => x.atStep === 0)
          .map((x) => x.left)
          .sort(),
      ).toEqual(['s0r0', 's0r1']);
    } finally {
      await releaseInProcessSwarm(roomy);
    }
  });

  it('equivocators and no spares: a named error, never their answer', async () => {
    const r = await runSwarm({ s1r0: fault('equivocate'), s1r2: fault('equivocate') });
    expect(r.error?.code).toBe('ERR_NO_QUORUM');
    expect(r.error?.message).toMatch(/sent the next stage other outputs than they reported/);
    expect(r.streamed).toEqual([]);
  });

  it('a replica whose output is NaN is outvoted, not taken for an equivocator (its frames are what it reported)', async () => {
    const r = await runSwarm({ s1r1: fault('nan') });
    expect(r.error).toBeNull();
    expect(r.tokens).toEqual(expected);
    expect(r.equivocators).toEqual([]);
  });

  it('one equivocator among honest senders is outvoted by the receivers, suspected but not evicted on their word alone', async () => {
    const r = await runSwarm({ s1r1: fault('equivocate') });
    expect(r.error).toBeNull();
    expect(r.tokens).toEqual(expected);
    // Every link held (the receivers computed on the honest majority's output): receivers could be framing it.
    expect(r.equivocators).toEqual([]);
    expect(r.suspects.map((e) => e.volunteer)).toEqual(['s1r1']);
  });
});
