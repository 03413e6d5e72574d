/**
 * What a token costs end to end at a real vocabulary, greedy and sampled: a
 * SmolLM-135M-shaped random checkpoint with its full 49 152-token vocabulary
 * and 2 layers (bench/last-head.ts's, under .cache/bench-models/), cut in 2
 * stages, through the reference runner (one process: compute, then the draw)
 * and the in-process swarm (real stages, replicas and coordinator, r = 3: the
 * coordinator votes on every step's logits and draws the token). Median ms a
 * token over runs; the swarm's tokens checked equal to the reference's for
 * each sampling. Run it on two commits back to back to see what a change to
 * the vote or the sampler is worth where it counts.
 *
 *   node --import tsx bench/sampled-token.ts [tokens] [repeats] [tabs | scored]
 *
 * With `tabs`, also the same checkpoint through Chromium tabs (benchRealVocabTabs); with `scored`, a scored prompt
 * at that vocabulary (benchScoredRealVocab).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { GREEDY, type SamplingParams } from '../shared/model/sampling.js';
import { drawnFormLength, drawnLogitsFor } from '../shared/vote/drawn-forms.js';
import { topLogitsFor, topLogitsLength } from '../shared/vote/top-logits.js';
import { ensureStages, loadStageSet } from '../signal-server/models/model-folder.js';
import { ReferenceRunner } from '../signal-server/reference/reference-runner.js';
import {
  createInProcessSwarm,
  type InProcessSwarm,
  releaseInProcessSwarm,
  runInProcess,
} from '../signal-server/testing/in-process-swarm.js';
import { logprobOf, promptLogprobs } from '../signal-server/testing/prompt-logprobs.js';
import { ensureRandomCheckpoint, randomIds } from '../testing/random-checkpoint.js';
import { benchDistribution } from './distribution.js';
import { REAL_VOCAB_DIR, REAL_VOCAB_SHAPE } from './last-head.js';
import { median, printTable } from './table.js';

const SAMPLINGS: readonly { readonly label: string; readonly p: SamplingParams }[] = [
  { label: 'greedy', p: GREEDY },
  // May read any token: the last stage sends its drawn form of 32 (shared/vote/drawn-forms.ts), 280 bytes.
  { label: 'temperature 0.8, seed 7', p: { temperature: 0.8, topK: 0, topP: 1, seed: 7 } },
  // The same with a logit_bias (on a token that does not change the draw much): whole rows, 196 608 bytes.
  { label: 'temperature 0.8, logit_bias, seed 7', p: { temperature: 0.8, topK: 0, topP: 1, seed: 7, logitBias: [[1, 0.5]] } },
  // Reads only the 40 most likely tokens: the last stage sends their drawn form of 48, not rows.
  { label: 'temperature 0.8, top_k 40, seed 7', p: { temperature: 0.8, topK: 40, topP: 1, seed: 7 } },
];

/** The checkpoint in 2 stages, its reference runner and an in-process swarm at r = 3, for `use`; released after. */
async function withRealVocabSwarm(
  prefix: string,
  use: (s: { readonly vocab: number; readonly reference: ReferenceRunner; readonly swarm: InProcessSwarm }) => Promise<void>,
): Promise<void> {
  const cache = mkdtempSync(join(tmpdir(), prefix));
  try {
    const checkpoint = ensureRandomCheckpoint(REAL_VOCAB_DIR, REAL_VOCAB_SHAPE, 135);
    const { dir } = await ensureStages(checkpoint, { stages: 2 }, cache);
    const set = await loadStageSet(dir);
    const reference = await ReferenceRunner.fromStageDir(dir);
    const swarm = await createInProcessSwarm(set.manifest, set.stageBytes, 3);
    try {
      await use({ vocab: set.manifest.model.vocabSize, reference, swarm });
    } finally {
      await reference.close();
      await releaseInProcessSwarm(swarm);
    }
  } finally {
    rmSync(cache, { recursive: true, force: true });
  }
}

/** What a last-stage replica sends the coordinator a token with `p`: a top form, a drawn form, or the whole row. */
function logitsBytes(p: SamplingParams, vocab: number): number {
  const drawn = drawnLogitsFor(p, vocab);
  const top = drawn === null ? topLogitsFor(p, vocab) : null;
  return 4 * (drawn !== null ? drawnFormLength(drawn) : top !== null ? topLogitsLength(top) : vocab);
}

export async function benchSampledToken(o: { tokens: number; repeats: number }): Promise<void> {
  const loads = [loadavg()[0] as number];
  await withRealVocabSwarm('webswarm-bench-sampled-', async ({ vocab, reference, swarm }) => {
    const prompt = randomIds(vocab, 16, 3);
    const rows: string[][] = [];
    await reference.generateIds(prompt, 4, GREEDY);
    await runInProcess(swarm, prompt, 4);
    for (const { label, p } of SAMPLINGS) {
      const ref: number[] = [];
      const swarmMs: number[] = [];
      for (let k = 0; k < o.repeats; k++) {
        let t0 = performance.now();
        const want = (await reference.generateIds(prompt, o.tokens, p)).tokens;
        ref.push((performance.now() - t0) / o.tokens);
        t0 = performance.now();
        const got = await runInProcess(swarm, prompt, o.tokens, {}, [], null, p);
        swarmMs.push((performance.now() - t0) / o.tokens);
        if (got.tokens.join() !== want.join()) throw new Error(`${label}: the swarm's tokens are not the reference's`);
        loads.push(loadavg()[0] as number);
      }
      rows.push([label, String(logitsBytes(p, vocab)), median(ref).toFixed(2), median(swarmMs).toFixed(2)]);
    }
    printTable(
      `A token at a 49 152-token vocabulary (SmolLM-135M-shaped, 2 layers in 2 stages), median ms a token of ${o.repeats} runs × ${o.tokens} tokens after a 16-token prompt (load average ${Math.min(...loads).toFixed(1)}–${Math.max(...loads).toFixed(1)})`,
      ['sampling', 'logits bytes a token and replica', 'reference runner', 'in-process swarm, r = 3'],
      rows,
    );
  });
}

/**
 * A scored prompt (completions' echo with logprobs) at the same vocabulary: 192 random tokens through the in-process
 * swarm, r = 3, each position's log-probability checked against the reference runner fed the prompt a token at a
 * time. As whole rows a step carries 4 of them (maxScoreRows at 49 152); as scored forms (top-logits.ts) 96.
 */
export async function benchScoredRealVocab(o: { repeats: number }): Promise<void> {
  const loads = [loadavg()[0] as number];
  await withRealVocabSwarm('webswarm-bench-scored-', async ({ vocab, reference, swarm }) => {
    const prompt = randomIds(vocab, 192, 9);
    let t0 = performance.now();
    const want = await promptLogprobs(reference, prompt);
    const refMs = (performance.now() - t0) / (prompt.length - 1);
    const ms: number[] = [];
    let runs = 0;
    for (let k = 0; k < o.repeats; k++) {
      const got: number[] = [];
      t0 = performance.now();
      const r = await runInProcess(swarm, prompt, 1, {}, [], null, GREEDY, null, 0, (position, rec) => {
        got[position - 1] = logprobOf(rec.logits, rec.token, rec.logSumExp);
      });
      ms.push((performance.now() - t0) / (prompt.length - 1));
      if (r.error !== undefined && r.error !== null) throw new Error(`the scored prompt failed: ${r.error.message}`);
      for (const [i, lp] of got.entries())
        if (!(Math.abs(lp - (want[i] as number)) < 1e-3)) throw new Error(`position ${i + 1}: ${lp}, the reference ${want[i]}`);
      runs = Math.max(...[...r.runsBy.entries()].filter(([id]) => !id.includes('spare')).map(([, n]) => n)) - 1;
      loads.push(loadavg()[0] as number);
    }
    printTable(
      `A scored prompt of ${prompt.length} tokens at a 49 152-token vocabulary (2 layers in 2 stages), in-process swarm r = 3, median ms a position of ${o.repeats} runs, every position's log-probability the reference's (load average ${Math.min(...loads).toFixed(1)}–${Math.max(...loads).toFixed(1)})`,
      ['setup', 'ms a position', 'steps (a replica)'],
      [
        ['reference runner, a position a step', refMs.toFixed(2), String(prompt.length - 1)],
        ['in-process swarm, r = 3', median(ms).toFixed(2), String(runs)],
      ],
    );
  });
}

/**
 * The same checkpoint in Chromium tabs on WASM (bench/distribution.ts): one tab running both stages against a swarm
 * of 2 tabs × r = 1, greedy and at temperature 0.8 (the mesh loop on: the last stage draws the token too), each
 * token's logits (196 KB a replica) sent to the coordinator over Socket.IO. Needs the built web app (npm run build).
 */
export async function benchRealVocabTabs(o: { tokens: number; repeats: number }): Promise<void> {
  await benchDistribution({
    stages: 2,
    tokens: o.tokens,
    repeats: o.repeats,
    warmup: 8,
    checkpoint: {
      dir: REAL_VOCAB_DIR,
      shape: REAL_VOCAB_SHAPE,
      seed: 135,
      label: 'a SmolLM-135M-shaped random checkpoint with its full 49 152-token vocabulary, 2 layers (seed 135)',
    },
    sampled: { temperature: 0.8, topK: 0, topP: 1, seed: 7 },
  });
}

if (process.argv[1]?.endsWith('sampled-token.ts')) {
  const tokens = Number(process.argv[2] ?? 32);
  const repeats = Number(process.argv[3] ?? 3);
  await benchSampledToken({ tokens, repeats });
  if (process.argv[4] === 'scored') await benchScoredRealVocab({ repeats });
  if (process.argv[4] === 'tabs') await benchRealVocabTabs({ tokens, repeats });
}
