// The oracle of a scored prompt (completions' echo): the reference runner fed the prompt a token at a time, as the
// swarm scores it, each position's row giving the next token's log-probability. Computed here, apart from the
// API's own code (api/logprobs.ts), so that a test compares two computations, not one with itself.
import type { ReferenceRunner } from '../reference/reference-runner.js';

/** log p(`token`) under a row of logits, in float64 (a row from a form: less its log-sum-exp, given). */
export function logprobOf(logits: ArrayLike<number>, token: number, logSumExp?: number): number {
  const row = Array.from(logits);
  const max = Math.max(...row);
  const total = row.reduce((s, v) => s + Math.exp(v - max), 0);
  return (row[token] as number) - (logSumExp ?? max + Math.log(total));
}

/** The log-probability of each prompt token after the first, at its position: ids.length − 1 of them. */
export async function promptLogprobs(runner: ReferenceRunner, ids: readonly number[]): Promise<number[]> {
  const session = runner.session();
  const vocab = runner.manifest.model.vocabSize;
  const out: number[] = [];
  for (let i = 0; i + 1 < ids.length; i++)
    out.push(logprobOf((await session.forward([ids[i] as number])).subarray(-vocab), ids[i + 1] as number));
  return out;
}
