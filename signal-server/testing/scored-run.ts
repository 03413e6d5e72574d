// A scored prompt (completions' echo) through the in-process swarm, and its oracle: the golden prompt scored, then
// `tokens` generated; each position's log-probability against the reference runner fed the prompt a token at a time
// (promptLogprobs), and the tokens after it against the reference's with the same sampling.
import { expect } from 'vitest';
import { GREEDY, type SamplingParams } from '../../shared/model/sampling.js';
import type { FaultBehaviour } from '../../shared/swarm/faults.js';
import type { GoldenSwarm } from './golden-swarm.js';
import { type Crash, type InProcessResult, type InProcessSwarm, runInProcess } from './in-process-swarm.js';
import { logprobOf } from './prompt-logprobs.js';

/** Stage by stage on the same WASM kernels as the reference: equal to float32 rounding. */
const TOLERANCE = 1e-4;

export interface ScoredRun {
  readonly r: InProcessResult;
  /** Position p's log-probability at index p − 1. */
  readonly logprobs: number[];
  /** The positions scored, in the order they came. */
  readonly positions: number[];
  /** Per position, each stage's agreeing replicas. */
  readonly votes: number[][];
}

export async function scoreInProcess(
  g: GoldenSwarm,
  swarm: InProcessSwarm,
  tokens: number,
  faults: Record<string, FaultBehaviour> = {},
  crash: Crash | readonly Crash[] | null = null,
  sampling: SamplingParams = GREEDY,
): Promise<ScoredRun> {
  const logprobs: number[] = [];
  const positions: number[] = [];
  const votes: number[][] = [];
  const r = await runInProcess(swarm, g.promptIds, tokens, faults, [], crash, sampling, null, 0, (position, rec) => {
    positions.push(position);
    if (rec.token !== g.promptIds[position]) throw new Error(`position ${position}: token ${rec.token}, not the prompt's`);
    logprobs[position - 1] = logprobOf(rec.logits, rec.token);
    votes.push(rec.votes.map((v) => v.agreed));
  });
  return { r, logprobs, positions, votes };
}

/** Every position scored once, in order, each the reference's (`want`: promptLogprobs); the tokens after, the reference's. */
export async function expectScoredAsReference(
  g: GoldenSwarm,
  want: readonly number[],
  got: ScoredRun,
  tokens: number,
  sampling: SamplingParams = GREEDY,
): Promise<void> {
  expect(got.r.error?.message ?? null).toBeNull();
  expect(got.positions).toEqual(g.promptIds.slice(1).map((_, i) => i + 1));
  for (const [i, lp] of got.logprobs.entries()) expect(Math.abs(lp - (want[i] as number)), `position ${i + 1}`).toBeLessThan(TOLERANCE);
  const ref = sampling === GREEDY ? g.expected.slice(0, tokens) : (await g.reference.generateIds(g.promptIds, tokens, sampling)).tokens;
  expect(got.r.tokens).toEqual(ref);
}
