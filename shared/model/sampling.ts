/** Sampling settings of a generation. temperature 0 = greedy (argmax, first index on ties). */
export interface SamplingParams {
  readonly temperature: number;
  /** Keep the k most likely tokens; 0 = no limit. */
  readonly topK: number;
  /** Keep the smallest set of tokens whose probability reaches p; 1 = no limit. */
  readonly topP: number;
  readonly seed: number;
  /**
   * Added to a token's logit before it is sampled (OpenAI's logit_bias, in
   * [-100, 100]): [token id, bias] pairs, each id once.
   */
  readonly logitBias?: readonly (readonly [number, number])[];
  /** Subtracted from a token's logit once for every time it was generated before (OpenAI's frequency_penalty, [-2, 2]). */
  readonly frequencyPenalty?: number;
  /** Subtracted from a token's logit once it was generated before at all (OpenAI's presence_penalty, [-2, 2]). */
  readonly presencePenalty?: number;
}

/** Most logit_bias entries a request may name. */
export const MAX_LOGIT_BIAS = 1024;

export const GREEDY: SamplingParams = { temperature: 0, topK: 0, topP: 1, seed: 0 };

/** A setting out of range: OpenAI's name of the field, and what is wrong with it. */
export interface SamplingProblem {
  readonly param: string;
  readonly message: string;
}

const problem = (param: string, message: string): SamplingProblem => ({ param, message: `${param}${message}` });

/** Checks sampling settings (the one rule the API, the CLI and the coordinator apply): the bad field, or null. */
export function samplingError(p: SamplingParams): SamplingProblem | null {
  if (!Number.isFinite(p.temperature) || p.temperature < 0 || p.temperature > 100) return problem('temperature', ' must be in [0, 100]');
  if (!Number.isInteger(p.topK) || p.topK < 0) return problem('top_k', ' must be an integer ≥ 0');
  if (!Number.isFinite(p.topP) || p.topP <= 0 || p.topP > 1) return problem('top_p', ' must be in (0, 1]');
  if (!Number.isInteger(p.seed) || p.seed < 0 || p.seed > 0xffffffff) return problem('seed', ' must be an integer in [0, 2^32)');
  for (const [name, v] of [
    ['frequency_penalty', p.frequencyPenalty],
    ['presence_penalty', p.presencePenalty],
  ] as const)
    if (v !== undefined && !(Number.isFinite(v) && v >= -2 && v <= 2)) return problem(name, ' must be a number in [-2, 2]');
  const bias = p.logitBias ?? [];
  if (bias.length > MAX_LOGIT_BIAS) return problem('logit_bias', ` may name at most ${MAX_LOGIT_BIAS} tokens`);
  const seen = new Set<number>();
  for (const [id, b] of bias) {
    if (!Number.isInteger(id) || id < 0 || seen.has(id))
      return problem('logit_bias', `: token id ${id} must be an integer ≥ 0, named once`);
    if (!(Number.isFinite(b) && b >= -100 && b <= 100))
      return problem('logit_bias', `: the bias of token ${id} must be a number in [-100, 100]`);
    seen.add(id);
  }
  return null;
}

/** Whether a token depends on the tokens generated before it (penalties), not on the logits alone. */
export function usesHistory(p: SamplingParams): boolean {
  return (p.frequencyPenalty ?? 0) !== 0 || (p.presencePenalty ?? 0) !== 0;
}

/**
 * The row the sampler draws from: `logit_bias` added, and each token generated
 * before (`generated`, this request's completion so far) penalised as OpenAI
 * describes: − count × frequency_penalty − (count > 0) × presence_penalty.
 * The row itself is left as it is (it is the voted value); without
 * adjustments it is returned unchanged.
 */
export function adjustedLogits(logits: ArrayLike<number>, p: SamplingParams, generated: readonly number[]): ArrayLike<number> {
  const bias = p.logitBias ?? [];
  const history = usesHistory(p) && generated.length > 0;
  if (bias.length === 0 && !history) return logits;
  const out = Float64Array.from(logits as ArrayLike<number>);
  for (const [id, b] of bias) if (id < out.length) out[id] = (out[id] as number) + b;
  if (history) {
    const counts = new Map<number, number>();
    for (const t of generated) counts.set(t, (counts.get(t) ?? 0) + 1);
    const freq = p.frequencyPenalty ?? 0;
    const presence = p.presencePenalty ?? 0;
    for (const [t, c] of counts) if (t >= 0 && t < out.length) out[t] = (out[t] as number) - c * freq - presence;
  }
  return out;
}

/** mulberry32's output for one state of its counter. */
function mix(state: number): number {
  let t = state >>> 0;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

const MULBERRY_STEP = 0x6d2b79f5;

/**
 * A small seeded generator (mulberry32): the same seed gives the same tokens on
 * the server, the reference runner and in a browser.
 */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + MULBERRY_STEP) >>> 0;
    return mix(a);
  };
}

/**
 * The `index`-th draw (0-based) of `seededRandom(seed)`, without the draws
 * before it: mulberry32's state is a counter, so step t's draw is known from
 * (seed, t) alone. The mesh loop needs this: the last stage's replicas, the
 * coordinator and a pipeline rolled back all draw step t's number, and agree
 * with the reference runner, which draws once per token in order.
 */
export function randomAt(seed: number, index: number): number {
  return mix((seed >>> 0) + Math.imul((index + 1) >>> 0, MULBERRY_STEP));
}

export function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  let bestV = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i] as number;
    if (v > bestV) {
      bestV = v;
      best = i;
    }
  }
  return best;
}

/**
 * Picks the next token from one row of logits. `random` is drawn from once per
 * sampled token; `generated` is the completion so far (for the penalties).
 */
export function sampleToken(row: ArrayLike<number>, p: SamplingParams, random: () => number, generated: readonly number[] = []): number {
  const logits = adjustedLogits(row, p, generated);
  if (p.temperature === 0) return argmax(logits);
  const order = Array.from({ length: logits.length }, (_, i) => i).filter((i) => Number.isFinite(logits[i] as number));
  if (order.length === 0) throw new Error('no finite logits to sample from');
  order.sort((a, b) => (logits[b] as number) - (logits[a] as number) || a - b);
  const kept = p.topK > 0 ? order.slice(0, p.topK) : order;
  const top = logits[kept[0] as number] as number;
  const weights = kept.map((i) => Math.exp(((logits[i] as number) - top) / p.temperature));
  const total = weights.reduce((a, b) => a + b, 0);
  let cut = kept.length;
  if (p.topP < 1) {
    let acc = 0;
    for (let j = 0; j < kept.length; j++) {
      acc += (weights[j] as number) / total;
      if (acc >= p.topP) {
        cut = j + 1;
        break;
      }
    }
  }
  const mass = weights.slice(0, cut).reduce((a, b) => a + b, 0);
  let r = random() * mass;
  for (let j = 0; j < cut; j++) {
    r -= weights[j] as number;
    if (r < 0) return kept[j] as number;
  }
  return kept[cut - 1] as number;
}
