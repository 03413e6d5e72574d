// A scored prompt (completions' echo) through the in-process swarm, and its oracle: the golden prompt scored, then
// `tokens` generated; each position's log-probability against the reference runner fed the prompt a token at a time
// (promptLogprobs), and the tokens after it against the reference's with the same sampling; and the same through a
// real server whose partition changes mid-prompt (expectScoredReplay).
import { expect } from 'vitest';
import { GREEDY, type SamplingParams } from '../../shared/model/sampling.js';
import type { FaultBehaviour } from '../../shared/swarm/faults.js';
import { tokenLogprob } from '../api/logprobs.js';
import { ensureStages } from '../models/model-folder.js';
import { ReferenceRunner } from '../reference/reference-runner.js';
import type { GoldenSwarm } from './golden-swarm.js';
import { type HttpSwarm, MODEL, PROMPT } from './http-swarm.js';
import { type Crash, type InProcessResult, type InProcessSwarm, runInProcess } from './in-process-swarm.js';
import type { NodeVolunteer } from './node-volunteer.js';
import { logprobOf, promptLogprobs } from './prompt-logprobs.js';

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
    logprobs[position - 1] = logprobOf(rec.logits, rec.token, rec.logSumExp);
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

/**
 * A scored prompt (echo) on a real server of 3 stages × r = 2 with re-partitioning on, where one volunteer of
 * `o.stage` leaves after computing `o.after` steps: 3 stages can no longer be kept, the request is replayed on a new
 * partition. Every position must be scored once, in order, with the reference's log-probability (fed the prompt a
 * token at a time), and the `o.tokens` after the prompt must be the reference's for `o.sampling`.
 */
export async function expectScoredReplay(
  swarm: HttpSwarm,
  o: { stage: number; after: number; sampling: SamplingParams; tokens: number; address: (i: number) => string },
): Promise<void> {
  // A position a step (the path a replay takes), so that the volunteer leaves mid-prompt.
  const { server, url, tokenizer } = await swarm.start(3, 2, {
    stepTimeoutMs: 20_000,
    repartition: { stageCache: swarm.stageCache() },
    scoreRows: 1,
  });
  const coordinator = server.coordinator;
  if (coordinator === null) throw new Error('no coordinator');
  const ids = tokenizer.encode(PROMPT);
  const runner = await ReferenceRunner.fromStageDir((await ensureStages(MODEL, { stages: 3 }, swarm.stageCache())).dir);
  const expected = (await runner.generateIds(ids, o.tokens, o.sampling)).tokens;
  const want = await promptLogprobs(runner, ids);
  await runner.close();
  expect(ids.length).toBeGreaterThan(4);
  const vs = Array.from({ length: 6 }, (_, i) => swarm.volunteer(url, o.address(i)));
  await expect.poll(() => swarm.readyCount(url), { timeout: 90_000 }).toBe(6);
  (vs.find((v) => v.stage === o.stage) as NodeVolunteer).leaveAfter(o.after);
  const positions: number[] = [];
  const got: number[] = [];
  const c = await coordinator.complete({ prompt: PROMPT, maxTokens: o.tokens, sampling: o.sampling, scorePrompt: true }, undefined, (u) => {
    positions.push(u.position);
    if (u.logits !== null) got.push(tokenLogprob(u.logits, u.token, 0, u.logSumExp).logprob);
  });
  expect(coordinator.replays).toBeGreaterThanOrEqual(1);
  expect(positions).toEqual(ids.map((_, i) => i));
  for (let i = 0; i < want.length; i++) expect(Math.abs((got[i] as number) - (want[i] as number)), `position ${i + 1}`).toBeLessThan(1e-5);
  expect(c.tokens).toEqual(expected);
}
