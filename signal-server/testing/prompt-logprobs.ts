// The oracle of a scored prompt (completions' echo): the reference runner fed the prompt a token at a time, as the
// swarm scores it, each position's row giving the next token's log-probability. Computed here, apart from the
// API's own code (api/logprobs.ts), so that a test compares two computations, not one with itself.
import type { ReferenceRunner } from '../reference/reference-runner.js';

/** The log-probability of each prompt token after the first, at its position: ids.length − 1 of them. */
export async function promptLogprobs(runner: ReferenceRunner, ids: readonly number[]): Promise<number[]> {
  const session = runner.session();
  const vocab = runner.manifest.model.vocabSize;
  const out: number[] = [];
  for (let i = 0; i + 1 < ids.length; i++) {
    const row = Array.from((await session.forward([ids[i] as number])).subarray(-vocab));
    const max = Math.max(...row);
    const total = row.reduce((s, v) => s + Math.exp(v - max), 0);
    out.push((row[ids[i + 1] as number] as number) - max - Math.log(total));
  }
  return out;
}
