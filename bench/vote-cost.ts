/**
 * What the coordinator's vote on a step's logits costs it (a Quorum of r
 * last-stage replicas: each answer compared with the groups so far, the
 * winner's values combined), on the coordinator's one thread for every step of
 * every session. The rule as it was until 5e99bc1 (the tolerance and each
 * row's argmax in three passes, the median by a sort call per element) against
 * the rule now (one pass; the median of two and three by comparisons), side by
 * side in one run, interleaved, medians. Replicas on one backend send
 * bit-identical logits (the combine takes them whole); replicas on different
 * backends (WebGPU and WASM volunteers in one stage) do not, and their median
 * is taken element by element. Every vote's value is checked equal between the
 * two, or the bench fails.
 *
 *   node --import tsx bench/vote-cost.ts, or in npm run bench (BENCH_VOTE_COST=0 skips it)
 */
import { loadavg } from 'node:os';
import { argmax, type SamplingParams, sampleToken, seededRandom } from '../shared/model/sampling.js';
import { type AgreeFn, agreeLogitRows, type Combine, majority, medianOf, Quorum } from '../shared/vote/quorum.js';
import { agreeTopLogits, expandTopLogits, MIN_TOP_LOGITS, medianOfTop, topLogitsLength, topLogitsOf } from '../shared/vote/top-logits.js';
import { agreeByPasses, medianBySort, sampleTokenBySort } from '../testing/reference-rules.js';
import { median, printTable } from './table.js';

interface Case {
  readonly label: string;
  readonly rows: number;
  readonly vocab: number;
  readonly r: number;
  /** Whether the replicas' logits differ in their last bits (other backends) or are identical (one backend). */
  readonly mixed: boolean;
}

const CASES: readonly Case[] = [
  { label: 'a token, vocabulary 2 048', rows: 1, vocab: 2048, r: 3, mixed: true },
  { label: 'a token, vocabulary 49 152', rows: 1, vocab: 49_152, r: 3, mixed: false },
  { label: 'a token, vocabulary 49 152', rows: 1, vocab: 49_152, r: 2, mixed: true },
  { label: 'a token, vocabulary 49 152', rows: 1, vocab: 49_152, r: 3, mixed: true },
  { label: 'a token, vocabulary 49 152', rows: 1, vocab: 49_152, r: 5, mixed: true },
  { label: 'a scored step, 96 rows × 2 048', rows: 96, vocab: 2048, r: 3, mixed: true },
  { label: 'a scored step, 4 rows × 49 152', rows: 4, vocab: 49_152, r: 3, mixed: true },
];

/** The r replicas' answers: seeded logits, each replica's off by float32 rounding where `mixed`. */
function answers(c: Case): Float32Array[] {
  const random = seededRandom(17);
  const base = Float32Array.from({ length: c.rows * c.vocab }, () => (random() - 0.5) * 24);
  return Array.from({ length: c.r }, (_, j) =>
    c.mixed ? base.map((v) => v * (1 + (random() - 0.5) * 2e-6 * (j + 1))) : new Float32Array(base),
  );
}

/** One vote, every replica answering in order: its ms and its value. */
function vote(
  values: readonly Float32Array[],
  agree: AgreeFn<Float32Array>,
  combine: Combine<Float32Array>,
): { ms: number; value: Float32Array } {
  const ids = values.map((_, i) => `r${i}`);
  const t0 = performance.now();
  const q = new Quorum(ids, agree, { needed: majority(values.length), combine });
  for (const [i, v] of values.entries()) q.add({ status: 'fulfilled', replica: ids[i] as string, value: v });
  const ms = performance.now() - t0;
  const s = q.state;
  if (s.kind !== 'agreed' || !s.settled) throw new Error(`the vote did not settle: ${s.kind}`);
  return { ms, value: s.value };
}

export function benchVoteCost(o: { repeats: number }): void {
  const loads = [loadavg()[0] as number];
  const rows = CASES.map((c) => {
    const values = answers(c);
    const before: number[] = [];
    const after: number[] = [];
    for (let k = 0; k <= o.repeats; k++) {
      const was = vote(values, agreeByPasses(c.vocab), medianBySort);
      const now = vote(values, agreeLogitRows(c.vocab), medianOf);
      if (was.value.some((v, i) => v !== now.value[i])) throw new Error(`${c.label}, r = ${c.r}: the two votes' values differ`);
      // The first of each is a warm-up.
      if (k === 0) continue;
      before.push(was.ms);
      after.push(now.ms);
    }
    loads.push(loadavg()[0] as number);
    const b = median(before);
    const a = median(after);
    return [c.label, String(c.r), c.mixed ? 'differ' : 'identical', b.toFixed(3), a.toFixed(3), `${(a / b).toFixed(2)} ×`];
  });
  printTable(
    `The coordinator's vote on a step's logits (a Quorum of r answers, all agreeing, combined), before vs now, median ms of ${o.repeats} votes, interleaved (load average ${Math.min(...loads).toFixed(1)}–${Math.max(...loads).toFixed(1)})`,
    ['step', 'r', "replicas' logits", 'before ms', 'now ms', 'now ÷ before'],
    rows,
  );
}

const SAMPLINGS: readonly { readonly label: string; readonly p: SamplingParams }[] = [
  { label: 'temperature 0.8', p: { temperature: 0.8, topK: 0, topP: 1, seed: 1 } },
  { label: 'temperature 0.8, top_k 40', p: { temperature: 0.8, topK: 40, topP: 1, seed: 1 } },
  { label: 'temperature 0.8, top_p 0.9', p: { temperature: 0.8, topK: 0, topP: 0.9, seed: 1 } },
];

/**
 * Sampling a token from the agreed logits (what the coordinator does every step of a request with a temperature,
 * and every last-stage replica of the mesh loop): the sort of indices before against the sort of values now,
 * interleaved, the same draws; every token checked equal between the two.
 */
export function benchSampling(o: { repeats: number }): void {
  const loads = [loadavg()[0] as number];
  const rows: string[][] = [];
  for (const vocab of [2048, 49_152])
    for (const { label, p } of SAMPLINGS) {
      // A peaked row, as a trained model's are: a few likely tokens, a long tail.
      const row = Float32Array.from({ length: vocab }, (_, i) => Math.sin(i * 1.7) * 6 + (i % 97 === 0 ? 8 : 0));
      const before: number[] = [];
      const after: number[] = [];
      const plain = seededRandom(p.seed);
      const fast = seededRandom(p.seed);
      for (let k = 0; k <= o.repeats; k++) {
        let t0 = performance.now();
        const was = sampleTokenBySort(row, p, plain);
        const wasMs = performance.now() - t0;
        t0 = performance.now();
        const now = sampleToken(row, p, fast);
        const nowMs = performance.now() - t0;
        if (was !== now) throw new Error(`${label}, vocabulary ${vocab}: draw ${k} gave ${was} before and ${now} now`);
        if (k === 0) continue;
        before.push(wasMs);
        after.push(nowMs);
      }
      loads.push(loadavg()[0] as number);
      const b = median(before);
      const a = median(after);
      rows.push([vocab.toLocaleString('en').replace(',', ' '), label, b.toFixed(3), a.toFixed(3), `${(a / b).toFixed(2)} ×`]);
    }
  printTable(
    `Sampling a token from a row of logits, before vs now, median ms of ${o.repeats} draws, interleaved, the same tokens (load average ${Math.min(...loads).toFixed(1)}–${Math.max(...loads).toFixed(1)})`,
    ['vocabulary', 'sampling', 'before ms', 'now ms', 'now ÷ before'],
    rows,
  );
}

/**
 * A greedy token at a 49 152-token vocabulary from whole rows (the vote, then argmax) against top forms of the same
 * rows (shared/vote/top-logits.ts: the vote on forms, then the draw from the accepted form's row), side by side,
 * interleaved, the same token checked; and what making a form costs a last-stage replica, and the bytes each
 * replica sends the coordinator a token.
 */
export function benchTopForms(o: { repeats: number }): void {
  const loads = [loadavg()[0] as number];
  const rows: string[][] = [];
  const vocab = 49_152;
  const k = MIN_TOP_LOGITS;
  for (const mixed of [false, true]) {
    const c: Case = { label: '', rows: 1, vocab, r: 3, mixed };
    const values = answers(c);
    const forms = values.map((v) => topLogitsOf(v, k));
    const whole: number[] = [];
    const top: number[] = [];
    const make: number[] = [];
    for (let n = 0; n <= o.repeats; n++) {
      let t0 = performance.now();
      const a = vote(values, agreeLogitRows(vocab), medianOf);
      const wasToken = argmax(a.value);
      const wholeMs = performance.now() - t0;
      t0 = performance.now();
      const f = topLogitsOf(values[0] as Float32Array, k);
      const makeMs = performance.now() - t0;
      t0 = performance.now();
      const b = vote(forms, agreeTopLogits, medianOfTop);
      const nowToken = argmax(expandTopLogits(b.value, vocab));
      const topMs = performance.now() - t0;
      if (wasToken !== nowToken || f.length !== forms[0]?.length)
        throw new Error(`top forms: token ${nowToken} where whole rows give ${wasToken}`);
      if (n === 0) continue;
      whole.push(wholeMs);
      top.push(topMs);
      make.push(makeMs);
    }
    loads.push(loadavg()[0] as number);
    const w = median(whole);
    const t = median(top);
    rows.push([
      mixed ? 'differ' : 'identical',
      w.toFixed(3),
      t.toFixed(3),
      `${(t / w).toFixed(2)} ×`,
      median(make).toFixed(3),
      `${vocab * 4} → ${topLogitsLength(k) * 4}`,
    ]);
  }
  printTable(
    `A greedy token at a 49 152-token vocabulary, r = 3: the coordinator's vote and draw on whole rows vs on top forms of ${k} tokens (the same rows), median ms of ${o.repeats}, interleaved, the same token (load average ${Math.min(...loads).toFixed(1)}–${Math.max(...loads).toFixed(1)})`,
    ["replicas' logits", 'whole rows ms', 'top forms ms', 'forms ÷ rows', 'a replica makes its form, ms', 'bytes a replica sends'],
    rows,
  );
}

if (process.argv[1]?.endsWith('vote-cost.ts')) {
  benchVoteCost({ repeats: 15 });
  benchSampling({ repeats: 15 });
  benchTopForms({ repeats: 15 });
}
