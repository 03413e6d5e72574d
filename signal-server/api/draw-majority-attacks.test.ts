// Red team of the majority's draw (majorityDraw in shared/vote/drawn-forms.ts, rowsMajorityDraw and the mesh loop's
// checks in signal-server/coordinator), found by a red-team helper. Over the real protocol: Node clients of the real
// replica, austen-2m in one stage (so every replica is the last stage and stage 0 both), the reference runner the
// oracle.
// 1. An established liar among two honest newcomers: where only established replicas' draws counted, its draw alone
//    was served (a whole row within the tolerance moved about one seed in five; a drawn form names any token); where
//    its other draw voided the newcomers' majority, steps whose draw lands in the tail failed. Now a drawn form's token
//    counts only where its own values give it (a named token it does not draw voids nothing), and where the values
//    themselves draw against each other (a row moved within the tolerance), the step fails by name: contested.
//    Two sybil newcomers that name another token beside an honest established replica still do not outvote it.
// 2. The mesh loop with whole rows: a replica whose row was the accepted (median) row was taken to have had to send
//    the median's draw, and one that sent another token was evicted as an equivocator. The served token is the
//    majority's draw, so a liar could make an honest replica's row the median, send stage 0 that replica's honest
//    token itself, and have the honest replica evicted. Now a replica is judged against its own logits' draw.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomAt, type SamplingParams, sampleToken } from '../../shared/model/sampling.js';
import type { StepLogits, VolunteerView } from '../../shared/protocol/messages.js';
import type { FaultBehaviour } from '../../shared/swarm/faults.js';
import { DRAWN_EXTRA, drawFromDrawnForm, drawnFormLength, drawnParts } from '../../shared/vote/drawn-forms.js';
import { agreeLogitRows } from '../../shared/vote/quorum.js';
import { MIN_TOP_LOGITS, topLogitsOf, topParts } from '../../shared/vote/top-logits.js';
import { liftMostLikely, mapLogitValues, rowTolerance } from '../../testing/logit-values.js';
import type { FallbackMode } from '../coordinator/fallback.js';
import { type ApiSwarm, API_MODEL as MODEL, postRaw, startApiSwarm, type WebswarmBody } from '../testing/api-swarm.js';
import { NodeVolunteer, type NodeVolunteerOptions } from '../testing/node-volunteer.js';

const VOCAB = 2048;
const PROMPT = 'It is a truth universally acknowledged, that a single man';
const READY_MS = 30_000;

const isRow = (a: Float32Array) => a.length === VOCAB;
const roster = (rig: ApiSwarm): VolunteerView[] => rig.server.coordinator?.volunteers() ?? [];

async function until(what: string, ok: () => boolean): Promise<void> {
  const end = Date.now() + READY_MS;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`${what} not within ${READY_MS} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A lying hook while `state.on`: whole rows moved within 0.9 of the tolerance; a drawn form names another of its tokens as drawn, at its named value. */
function liarHook(state: { on: boolean; raised: number; calls: number }): (m: StepLogits) => StepLogits {
  return (m) => {
    const all = new Float32Array(m.logits);
    if (!state.on) return m;
    if (isRow(all)) {
      state.calls += 1;
      return { ...m, logits: liftMostLikely(all, state.raised, 0.9).buffer as ArrayBuffer };
    }
    if (all.length !== drawnFormLength(MIN_TOP_LOGITS)) return m;
    state.calls += 1;
    const { values, ids } = topParts(drawnParts(all).form);
    const j = ids[0] === drawnParts(all).drawn ? 1 : 0;
    all[all.length - DRAWN_EXTRA + 2] = ids[j] as number;
    all[all.length - 1] = values[j] as number;
    return { ...m, logits: all.buffer as ArrayBuffer };
  };
}

/**
 * Three replicas, the first with `first`'s options: a 12-token answer gives it a record (10 agreements make one),
 * then the other two leave and two newcomers with `newcomer`'s options take their places.
 */
async function establishedAndNewcomers(
  prefix: string,
  first: NodeVolunteerOptions,
  newcomer: NodeVolunteerOptions,
  fallback?: FallbackMode,
): Promise<{ rig: ApiSwarm; newcomers: NodeVolunteer[] }> {
  const r = await startApiSwarm(prefix, {
    redundancy: 3,
    apiMaxConcurrent: 0,
    volunteer: (i) => (i === 0 ? first : {}),
    ...(fallback === undefined ? {} : { fallback }),
  });
  const newcomers: NodeVolunteer[] = [];
  try {
    await r.client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 12, temperature: 0 });
    const firstId = r.volunteers[0]?.id;
    await until('an established replica', () => roster(r).some((v) => v.id === firstId && v.established));
    for (const v of r.volunteers.slice(1)) await v.close();
    for (let i = 0; i < 2; i++) newcomers.push(new NodeVolunteer(r.server.address().url, newcomer));
    await until('two newcomers ready, the others gone', () => {
      const vs = roster(r);
      return vs.length === 3 && vs.filter((v) => v.ready && !v.established).length === 2;
    });
    return { rig: r, newcomers };
  } catch (e) {
    for (const v of newcomers) await v.close();
    await r.close();
    throw e;
  }
}

/**
 * A sampled answer at temperature 1 (the API's default: a fifth of austen-2m's draws here land beyond the form's 32
 * tokens), or with `topK` (within the form: where no token has a majority of draws, the draw again from the voted
 * values gives the row's token).
 */
async function askSampled(r: ApiSwarm, tokens: number, topK = 0, seed = 11): Promise<{ body: WebswarmBody; want: number[] }> {
  const p: SamplingParams = { temperature: 1, topK, topP: 1, seed };
  const want = (await r.reference.generateIds(r.reference.tokenizer.encode(PROMPT), tokens, p)).tokens;
  const body = (await r.client.completions.create({
    model: MODEL,
    prompt: PROMPT,
    max_tokens: tokens,
    temperature: 1,
    seed: p.seed,
    ...(topK > 0 ? { top_k: topK } : {}),
  } as Parameters<ApiSwarm['client']['completions']['create']>[0])) as unknown as WebswarmBody;
  return { body, want };
}

describe('an established liar among two honest newcomers', () => {
  const liar = { on: false, raised: 1, calls: 0 };
  let rig: ApiSwarm | undefined;
  let newcomers: NodeVolunteer[] = [];
  beforeAll(async () => {
    ({ rig, newcomers } = await establishedAndNewcomers('webswarm-draw-established-', { tamperLogits: liarHook(liar) }, {}));
  }, 120_000);
  afterAll(async () => {
    for (const v of newcomers) await v.close();
    await rig?.close();
  });

  it('cannot have its whole row’s draw served alone (a logit_bias): contested, the step fails by name', async () => {
    const r = rig as ApiSwarm;
    const honest = (await r.reference.session().forward(r.reference.tokenizer.encode(PROMPT))).slice(-VOCAB);
    const sampling = (seed: number): SamplingParams => ({ temperature: 1, topK: 0, topP: 1, seed, logitBias: [[5, 1]] });
    const draw = (row: Float32Array, seed: number) => sampleToken(row, sampling(seed), () => randomAt(seed, 0));
    // The rig: a seed at which the liar's row (agreeing with the honest one) draws another token.
    let found: { seed: number; raised: number } | null = null;
    for (const raised of [1, 2, 4, 8]) {
      const lied = liftMostLikely(honest, raised, 0.9);
      expect(agreeLogitRows(VOCAB)(lied, honest) && agreeLogitRows(VOCAB)(honest, lied)).toBe(true);
      for (let seed = 1; seed <= 500 && found === null; seed++) if (draw(lied, seed) !== draw(honest, seed)) found = { seed, raised };
      if (found !== null) break;
    }
    if (found === null) throw new Error('no seed moves the liar’s draw');
    liar.on = true;
    liar.raised = found.raised;
    const before = liar.calls;
    const res = await postRaw(`${r.server.address().url}/v1/completions`, {
      model: MODEL,
      prompt: PROMPT,
      max_tokens: 1,
      temperature: 1,
      seed: found.seed,
      logit_bias: { '5': 1 },
    });
    liar.on = false;
    expect(liar.calls).toBeGreaterThan(before);
    // Its row draws within the tolerance what it likes; the newcomers' rows draw the honest token. Newcomers never
    // outvote an established replica, nor does it win alone: neither token is served, and the requester is told why.
    expect(res.status, res.raw).toBe(503);
    expect(res.raw).toContain('ERR_NO_QUORUM');
    expect(res.raw).toContain('newcomers');
    expect(res.raw).not.toContain(`"tokens":[${draw(liftMostLikely(honest, found.raised, 0.9), found.seed)}]`);
  }, 60_000);

  it('cannot have the token its drawn form names served alone, nor fail the steps whose draw lands in the tail', async () => {
    // The rig: at seed 5 (a red-team helper's), the reference's draws land beyond the 32 most likely tokens at some
    // of the first steps, where a draw again from the voted values cannot stand in for a majority's.
    const r = rig as ApiSwarm;
    const ids = r.reference.tokenizer.encode(PROMPT);
    const reference = (await r.reference.generateIds(ids, 8, { temperature: 1, topK: 0, topP: 1, seed: 5 })).tokens;
    let tail = 0;
    for (let t = 0; t < reference.length; t++) {
      const row = (await r.reference.session().forward([...ids, ...reference.slice(0, t)])).slice(-VOCAB);
      if (!topParts(topLogitsOf(row, MIN_TOP_LOGITS)).ids.includes(reference[t] as number)) tail += 1;
    }
    expect(tail).toBeGreaterThan(0);
    liar.on = true;
    const before = liar.calls;
    const { body, want } = await askSampled(r, 8, 0, 5);
    liar.on = false;
    expect(body.webswarm.tokens).toEqual(want);
    expect(liar.calls - before).toBeGreaterThanOrEqual(8);
  }, 60_000);
});

describe('two sybil newcomers beside an honest established replica', () => {
  const sybils = { on: false, raised: 1, calls: 0 };
  let rig: ApiSwarm | undefined;
  let newcomers: NodeVolunteer[] = [];
  beforeAll(async () => {
    ({ rig, newcomers } = await establishedAndNewcomers('webswarm-draw-sybils-', {}, { tamperLogits: liarHook(sybils) }));
  }, 120_000);
  afterAll(async () => {
    for (const v of newcomers) await v.close();
    await rig?.close();
  });

  it('cannot outvote its draw by naming another token in both their drawn forms', async () => {
    sybils.on = true;
    const before = sybils.calls;
    const { body, want } = await askSampled(rig as ApiSwarm, 8, 20);
    sybils.on = false;
    expect(body.webswarm.tokens).toEqual(want);
    // Both lied at every step, and agree within the tolerance (their values are honest).
    expect(sybils.calls - before).toBeGreaterThanOrEqual(16);
    for (const v of body.webswarm.votes) expect(v.votes[0]?.agreed).toBe(3);
  }, 60_000);
});

describe('two sybil newcomers that move their weights within the tolerance to draw a token of their own', () => {
  // A red-team helper's attack: each claim is what its own (moved) values draw, so it counts; a newcomers' majority
  // against an established replica's draw is contested, and the step fails by name rather than serve their token.
  const p: SamplingParams = { temperature: 0.7, topK: 0, topP: 1, seed: 3 };
  const sybils = { on: false, moved: 0 };
  const hook = (m: StepLogits): StepLogits => {
    const all = new Float32Array(m.logits);
    if (!sybils.on || all.length !== drawnFormLength(MIN_TOP_LOGITS)) return m;
    const u = randomAt(p.seed, m.step);
    for (const by of [0.98, -0.98]) {
      const moved = mapLogitValues(all, VOCAB, (v, role, tol) => (role === 'weight' ? v + by * tol : v));
      moved[moved.length - DRAWN_EXTRA + 2] = -1;
      const theirs = drawFromDrawnForm(moved, p, u);
      if (theirs === null || theirs === drawnParts(all).drawn) continue;
      const { values, ids } = topParts(drawnParts(moved).form);
      moved[moved.length - DRAWN_EXTRA + 2] = theirs;
      moved[moved.length - 1] = values[ids.indexOf(theirs)] as number;
      sybils.moved += 1;
      return { ...m, logits: moved.buffer as ArrayBuffer };
    }
    return m;
  };
  const ask = (r: ApiSwarm) =>
    postRaw(`${r.server.address().url}/v1/completions`, {
      model: MODEL,
      prompt: PROMPT,
      max_tokens: 16,
      temperature: p.temperature,
      seed: p.seed,
    });
  for (const fallback of ['off', 'stage'] as const)
    describe(`FALLBACK=${fallback}`, () => {
      let rig: ApiSwarm | undefined;
      let newcomers: NodeVolunteer[] = [];
      beforeAll(async () => {
        ({ rig, newcomers } = await establishedAndNewcomers(`webswarm-draw-moved-${fallback}-`, {}, { tamperLogits: hook }, fallback));
      }, 120_000);
      afterAll(async () => {
        for (const v of newcomers) await v.close();
        await rig?.close();
      });

      it(fallback === 'off'
        ? 'do not have their token served: the step is contested, no spares retry it, and it fails by name'
        : 'do not have their token served: the contested stage is retried, the server takes it, and the tokens are the reference’s', async () => {
        const r = rig as ApiSwarm;
        const before = sybils.moved;
        sybils.on = true;
        const res = await ask(r);
        sybils.on = false;
        // Both moved a claim at some step (so the attack was made), and no token of theirs reached the requester.
        expect(sybils.moved - before).toBeGreaterThanOrEqual(2);
        if (fallback === 'off') {
          expect(res.status, res.raw).toBe(503);
          expect(res.raw).toContain('ERR_NO_QUORUM');
          expect(res.raw).toContain('newcomers');
          return;
        }
        expect(res.status, res.raw).toBe(200);
        const body = res.body as WebswarmBody;
        const want = (await r.reference.generateIds(r.reference.tokenizer.encode(PROMPT), 16, p)).tokens;
        expect(body.webswarm.tokens).toEqual(want);
        expect(body.webswarm.votes.some((v) => v.votes[0]?.server === true)).toBe(true);
      }, 60_000);
    });
});

describe('the mesh loop with whole rows: a liar framing an honest replica on the other side of a near tie', () => {
  const plan = { t1: -1, t2: -1, tol: 0, on: false };
  /** Honest B rounds the two most likely tokens up (t2 more: by its row, t2 is the greedy token). */
  const bRow = (d: Float32Array) => {
    const o = new Float32Array(d);
    o[plan.t1] = (d[plan.t1] as number) + 0.1 * plan.tol;
    o[plan.t2] = (d[plan.t2] as number) + 0.25 * plan.tol;
    return o;
  };
  /** The liar: B's row with t1 higher still (its own row gives t1, and the median row is B's), and t2 sent to stage 0. */
  const lRow = (d: Float32Array) => {
    const o = bRow(d);
    o[plan.t1] = (d[plan.t1] as number) + 0.3 * plan.tol;
    return o;
  };
  const honestB: FaultBehaviour = { output: (s, d, last) => (plan.on && s === 0 && last && isRow(d) ? bRow(d) : d), delayMs: 0 };
  const liar: FaultBehaviour = {
    output: (s, d, last) => (plan.on && s === 0 && last && isRow(d) ? lRow(d) : d),
    delayMs: 0,
    token: (s, sampled) => (plan.on && s === 1 ? plan.t2 : sampled),
  };
  let rig: ApiSwarm | undefined;
  beforeAll(async () => {
    rig = await startApiSwarm('webswarm-draw-mesh-', {
      redundancy: 3,
      apiMaxConcurrent: 0,
      volunteer: (i) => (i === 0 ? { fault: liar } : i === 1 ? {} : { fault: honestB }),
    });
  }, 60_000);
  afterAll(() => rig?.close());

  it('the liar is evicted as an equivocator, the honest replica kept, and the tokens are the reference’s', async () => {
    const r = rig as ApiSwarm;
    const ids = r.reference.tokenizer.encode(PROMPT);
    const row = (await r.reference.session().forward(ids)).slice(-VOCAB);
    const order = [...row.keys()].sort((a, b) => (row[b] as number) - (row[a] as number));
    const [t1, t2] = order as [number, number];
    const tol = rowTolerance(row);
    // A near tie made with the request's own logit_bias: t2 0.05 of the tolerance below t1.
    const bias = (row[t1] as number) - (row[t2] as number) - 0.05 * tol;
    Object.assign(plan, { t1, t2, tol, on: true });
    const sampling: SamplingParams = { temperature: 0, topK: 0, topP: 1, seed: 1, logitBias: [[t2, bias]] };
    const want = (await r.reference.generateIds(ids, 4, sampling)).tokens;
    expect(want[0]).toBe(t1);
    const [liarId, , bId] = r.volunteers.map((v) => v.id);
    const body = (await r.client.completions.create({
      model: MODEL,
      prompt: PROMPT,
      max_tokens: 4,
      temperature: 0,
      logit_bias: { [String(t2)]: bias },
    })) as unknown as WebswarmBody;
    plan.on = false;
    expect(body.webswarm.tokens).toEqual(want);
    // The honest replica sent what its own row gives: kept, nothing against it. The liar's own row gives t1 and it
    // sent t2: evicted (it was counted one disagreement, and the honest replica evicted, before).
    await until('the liar evicted', () => !roster(r).some((v) => v.id === liarId));
    expect(roster(r).find((v) => v.id === bId)).toMatchObject({ disagreed: 0 });
  }, 60_000);
});
