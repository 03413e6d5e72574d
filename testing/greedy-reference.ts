// The reference runner's greedy decoding of a prompt (WASM in Node, a stage
// folder's graphs): the oracle the browser tests compare a tab's tokens and
// logits with.
import { argmax } from '../shared/model/sampling.js';
import { ReferenceRunner } from '../signal-server/reference/reference-runner.js';

export interface GreedyReference {
  /** The greedy tokens: the prompt's next token, then one after each fed back. */
  readonly tokens: number[];
  /** The last position's logits after the prompt and after each token fed. */
  readonly logits: Float32Array[];
}

/** `tokens` greedy tokens after `ids`, with the logits each was taken from, from the stages in `dir`. */
export async function greedyReference(dir: string, ids: readonly number[], tokens: number): Promise<GreedyReference> {
  const runner = await ReferenceRunner.fromStageDir(dir);
  try {
    const vocab = runner.manifest.model.vocabSize;
    const session = runner.session();
    const last = (l: Float32Array) => l.slice(l.length - vocab);
    const logits = [last(await session.forward(ids))];
    const out = [argmax(logits[0] as Float32Array)];
    while (out.length < tokens) {
      logits.push(last(await session.forward([out[out.length - 1] as number])));
      out.push(argmax(logits[logits.length - 1] as Float32Array));
    }
    return { tokens: out, logits };
  } finally {
    await runner.close();
  }
}
