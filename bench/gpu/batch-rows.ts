// npm run bench:gpu's batching rows: B prompts of one length decoded as one
// batch, every stage one runtime call a step for all B rows. The rows never
// change, so each call's present.* is the next call's past.* as it is (on
// WebGPU it stays a GPU buffer): what a replica's batched decode costs on the
// provider, without the worker's gathering around it. Each row's greedy
// tokens are compared with the same prompt decoded alone.
import type { StageManifest } from '../../shared/model/manifest.js';
import type { DeviceTensor, KvFeeds, SessionExecutor, TensorData } from '../../shared/model/pipeline.js';
import { STAGE_IO, stageInputName, stageOutputName } from '../../shared/model/stage-graph.js';
import { FUSED_IO } from '../../shared/model/stage-graph-fused.js';
import { median } from '../table.js';

export type RunStage = (stage: number, feeds: KvFeeds) => Promise<KvFeeds>;

export interface BatchResult {
  /** Median ms of one decode step of all rows through every stage. */
  readonly stepMs: number;
  /** Ms of the rows' prompts, one call a stage. */
  readonly promptMs: number;
  /** Each row's greedy tokens: the prompt's next token, then one a step. */
  readonly tokens: number[][];
}

/** The argmax of each row's last position in logits [B, S, vocab]. */
export function greedyRows(logits: TensorData, rows: number, vocab: number): number[] {
  if (logits.dtype !== 'float32') throw new Error(`logits are ${logits.dtype}, not float32`);
  const per = logits.data.length / rows;
  return Array.from({ length: rows }, (_, b) => {
    const row = logits.data.subarray((b + 1) * per - vocab, (b + 1) * per);
    let best = 0;
    for (let i = 1; i < row.length; i++) if ((row[i] as number) > (row[best] as number)) best = i;
    return best;
  });
}

/** One session's forward pass through every stage of `caches` (its KV cache kept there): the greedy next token of `ids`. */
export function greedyForward(
  manifest: StageManifest,
  caches: SessionExecutor,
): (session: number, ids: readonly number[]) => Promise<number> {
  return async (session, ids) => {
    let carry: TensorData = { dtype: 'int64', dims: [1, ids.length], data: BigInt64Array.from(ids, (i) => BigInt(i)) };
    for (let s = 0; s < manifest.stages.length; s++) carry = await caches.step(session, s, carry);
    return greedyRows(carry, 1, manifest.model.vocabSize)[0] as number;
  };
}

function isDevice(t: TensorData | DeviceTensor | undefined): t is DeviceTensor {
  return t !== undefined && t.dtype === 'device';
}

/**
 * Decodes `prompts` (all of one length) as one batch for `tokens` timed steps
 * after `warmup` untimed ones, through `run`; frees device tensors it replaces.
 */
export async function decodeBatch(
  manifest: StageManifest,
  run: RunStage,
  prompts: readonly (readonly number[])[],
  tokens: number,
  warmup: number,
): Promise<BatchResult> {
  const b = prompts.length;
  const n = prompts[0]?.length ?? 0;
  if (b === 0 || n === 0 || prompts.some((p) => p.length !== n)) throw new RangeError('a batch needs prompts of one length ≥ 1');
  const { numKvHeads, headDim, vocabSize } = manifest.model;
  const numStages = manifest.stages.length;
  const caches = manifest.stages.map(() => new Map<string, TensorData | DeviceTensor>());
  let length = 0;
  const forward = async (ids: readonly (readonly number[])[]): Promise<number[]> => {
    const s = ids[0]?.length ?? 0;
    let carry: TensorData = { dtype: 'int64', dims: [b, s], data: BigInt64Array.from(ids.flat(), (i) => BigInt(i)) };
    for (const [stage, entry] of manifest.stages.entries()) {
      const cache = caches[stage] as Map<string, TensorData | DeviceTensor>;
      const feeds: KvFeeds = { [stageInputName(stage)]: carry };
      for (let l = entry.layers.start; l < entry.layers.end; l++) {
        for (const [past, present] of [
          [STAGE_IO.pastKey(l), STAGE_IO.presentKey(l)],
          [STAGE_IO.pastValue(l), STAGE_IO.presentValue(l)],
        ] as const) {
          feeds[past] = cache.get(present) ?? { dtype: 'float32', dims: [b, numKvHeads, 0, headDim], data: new Float32Array(0) };
        }
      }
      if (manifest.graph === 'fused') {
        feeds[FUSED_IO.seqlensK] = { dtype: 'int32', dims: [b], data: new Int32Array(b).fill(length + s - 1) };
        feeds[FUSED_IO.totalSequenceLength] = { dtype: 'int32', dims: [], data: Int32Array.of(length + s) };
      }
      const out = await run(stage, feeds);
      for (const [name, t] of Object.entries(out)) {
        if (!name.startsWith('present.')) continue;
        const old = cache.get(name);
        if (isDevice(old) && old !== t) old.dispose();
        cache.set(name, t);
      }
      const main = out[stageOutputName(stage, numStages)];
      if (main === undefined || main.dtype !== 'float32')
        throw new Error(`stage ${stage} returned no float32 ${stageOutputName(stage, numStages)}`);
      carry = main;
    }
    length += s;
    return greedyRows(carry, b, vocabSize);
  };
  const rows: number[][] = prompts.map(() => []);
  const push = (next: number[]) => {
    for (const [i, t] of next.entries()) rows[i]?.push(t);
  };
  const t0 = performance.now();
  push(await forward(prompts));
  const promptMs = performance.now() - t0;
  const stepMs: number[] = [];
  for (let i = 0; i < warmup + tokens; i++) {
    const t = performance.now();
    push(await forward(rows.map((r) => [r[r.length - 1] as number])));
    if (i >= warmup) stepMs.push(performance.now() - t);
  }
  for (const cache of caches) for (const t of cache.values()) if (isDevice(t)) t.dispose();
  return { stepMs: median(stepMs), promptMs, tokens: rows };
}
