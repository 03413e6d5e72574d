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
 *
 * The rule: the finite tokens most likely first (ties by index), the first
 * topK of them, weights exp((logit − largest) ÷ temperature) summed in that
 * order, cut where their share first reaches topP, and the draw walked down
 * that order. The order is found by sorting the logits' values alone (the
 * weights and their sums need only the values, and equal values weigh the
 * same; a radix sort for long float32 rows, a bounded heap for a small
 * topK), and only the drawn place is turned into a token id. At a 49 152-token
 * vocabulary a draw took 20–34 ms by a sort of indices through a comparator,
 * and takes 2.3–2.9 now (0.4 with top_k 40): on the coordinator every step of
 * a request with a temperature, and on every last-stage replica of the mesh
 * loop. The tokens are the same for every seed (shared/model/sampling.test.ts
 * checks them against the plain rule).
 */
export function sampleToken(row: ArrayLike<number>, p: SamplingParams, random: () => number, generated: readonly number[] = []): number {
  if (p.temperature === 0) return argmax(adjustedLogits(row, p, generated));
  return drawToken(row, p, random, generated).token;
}

/** A draw at a temperature, and what it weighed: a drawn form (top-logits.ts) carries these. */
export interface Draw {
  readonly token: number;
  /** The largest finite logit (after logit_bias and penalties): every weight is exp((logit − top) ÷ temperature). */
  readonly top: number;
  /** The weights of every token the draw could keep (the topK most likely, or all), summed most likely first. */
  readonly total: number;
  /** The weights of the tokens kept after top_p's cut, summed the same way: the draw's number is scaled by it. */
  readonly mass: number;
}

/** sampleToken's draw at a temperature (> 0), with its weights (the same rule, the same token). */
export function drawToken(row: ArrayLike<number>, p: SamplingParams, random: () => number, generated: readonly number[] = []): Draw {
  if (!(p.temperature > 0)) throw new RangeError('a draw needs a temperature above 0');
  const logits = adjustedLogits(row, p, generated);
  const order = finiteMostLikelyFirst(logits, p.topK);
  const kept = order.length;
  if (kept === 0) throw new Error('no finite logits to sample from');
  const top = order[0] as number;
  const weights = new Float64Array(kept);
  let total = 0;
  for (let j = 0; j < kept; j++) {
    const w = Math.exp(((order[j] as number) - top) / p.temperature);
    weights[j] = w;
    total += w;
  }
  let cut = kept;
  if (p.topP < 1) {
    let acc = 0;
    for (let j = 0; j < kept; j++) {
      acc += (weights[j] as number) / total;
      if (acc >= p.topP) {
        cut = j + 1;
        break;
      }
    }
  }
  let mass = 0;
  for (let j = 0; j < cut; j++) mass += weights[j] as number;
  let r = random() * mass;
  let at = cut - 1;
  for (let j = 0; j < cut; j++) {
    r -= weights[j] as number;
    if (r < 0) {
      at = j;
      break;
    }
  }
  return { token: tokenAt(logits, order, at), top, total, mass };
}

/**
 * The finite logits' values, largest first: all of them, or the `topK` largest (a bounded heap, then a sort of those
 * alone, where topK is small next to the vocabulary). Float32 rows are sorted as float32 (the same values, half the bytes).
 */
function finiteMostLikelyFirst(logits: ArrayLike<number>, topK: number): Float32Array | Float64Array {
  const values = logits instanceof Float32Array ? new Float32Array(logits.length) : new Float64Array(logits.length);
  let n = 0;
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i] as number;
    if (Number.isFinite(v)) values[n++] = v;
  }
  let chosen = values.subarray(0, n);
  if (topK > 0 && topK * 8 < n) {
    // A min-heap of the topK largest so far: its root is the smallest of them.
    const heap = values.slice(0, topK);
    for (let at = (topK >> 1) - 1; at >= 0; at--) siftDown(heap, at);
    for (let i = topK; i < n; i++)
      if ((values[i] as number) > (heap[0] as number)) {
        heap[0] = values[i] as number;
        siftDown(heap, 0);
      }
    chosen = heap;
  }
  const sorted = chosen instanceof Float32Array && chosen.length > RADIX_FROM ? descendingFloat32(chosen) : chosen.sort().reverse();
  return topK > 0 && topK < sorted.length ? sorted.subarray(0, topK) : sorted;
}

/** Rows longer than this are sorted by radix (three passes over the values), shorter ones by the native sort. */
const RADIX_FROM = 4096;

/**
 * `values` (float32, all finite) largest first, by an LSD radix sort of their bits in three passes of 11 bits: keys
 * that order as the floats do (the sign bit flipped for positives, every bit for negatives), complemented so that
 * the largest comes first. At 49 152 values the whole draw (this, one exp a value, the token's id) took 2.7–2.8 ms
 * here, where a native sort of the values alone took 3.8.
 */
function descendingFloat32(values: Float32Array): Float32Array {
  const n = values.length;
  const bits = new Uint32Array(values.buffer, values.byteOffset, n);
  let keys = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const b = bits[i] as number;
    // Ascending key: negatives with every bit flipped, positives with the sign set; complemented for descending.
    keys[i] = ~(b & 0x80000000 ? ~b : b | 0x80000000) >>> 0;
  }
  let spare = new Uint32Array(n);
  const counts = new Uint32Array(2048);
  for (let shift = 0; shift < 32; shift += 11) {
    counts.fill(0);
    for (let i = 0; i < n; i++) {
      const d = ((keys[i] as number) >>> shift) & 0x7ff;
      counts[d] = (counts[d] as number) + 1;
    }
    let sum = 0;
    for (let d = 0; d < 2048; d++) {
      const c = counts[d] as number;
      counts[d] = sum;
      sum += c;
    }
    for (let i = 0; i < n; i++) {
      const k = keys[i] as number;
      const d = (k >>> shift) & 0x7ff;
      spare[counts[d] as number] = k;
      counts[d] = (counts[d] as number) + 1;
    }
    [keys, spare] = [spare, keys];
  }
  const out = new Float32Array(n);
  const outBits = new Uint32Array(out.buffer);
  for (let i = 0; i < n; i++) {
    const asc = ~(keys[i] as number) >>> 0;
    outBits[i] = asc & 0x80000000 ? asc & 0x7fffffff : ~asc >>> 0;
  }
  return out;
}

function siftDown(heap: Float32Array | Float64Array, from: number): void {
  const n = heap.length;
  for (let at = from; ; ) {
    const left = 2 * at + 1;
    if (left >= n) return;
    const right = left + 1;
    const least = right < n && (heap[right] as number) < (heap[left] as number) ? right : left;
    if ((heap[least] as number) >= (heap[at] as number)) return;
    const v = heap[at] as number;
    heap[at] = heap[least] as number;
    heap[least] = v;
    at = least;
  }
}

/**
 * The token at place `j` of `order` (values largest first), ties by index: the value's how-many-th place among its
 * equals (−0 and +0 are equal, as they weigh the same), then that many of the tokens of that value in index order.
 */
function tokenAt(logits: ArrayLike<number>, order: Float32Array | Float64Array, j: number): number {
  const value = order[j] as number;
  let first = j;
  while (first > 0 && order[first - 1] === value) first--;
  let skip = j - first;
  for (let i = 0; i < logits.length; i++)
    if (logits[i] === value) {
      if (skip === 0) return i;
      skip--;
    }
  throw new Error('the sampled place has no token');
}
