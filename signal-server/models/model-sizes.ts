import type { TensorIndex } from '../../shared/model/tensor-index.js';
import type { ModelSizes } from '../coordinator/partition-planner.js';
import { type HeldForm, largestHeldBuffers } from './held-buffers.js';

/**
 * What each part of a checkpoint weighs, from its tensor index (the bytes as
 * stored): each decoder layer (`model.layers.<i>.`), what only the first stage
 * holds (the embedding), and what only the last holds (the final norm and the
 * head, or the embedding again where the two are tied). With `form` (the
 * stages' model, precision and graph form), also the largest single buffer of
 * each part as the stage graphs hold it (held-buffers.ts).
 */
export function modelSizesOf(index: TensorIndex, numLayers: number, form?: HeldForm): ModelSizes {
  const layerBytes = new Array<number>(numLayers).fill(0);
  let embed = 0;
  let head = 0;
  let norm = 0;
  for (const t of index.tensors) {
    const layer = /^model\.layers\.(\d+)\./.exec(t.name);
    if (layer !== null) {
      const i = Number(layer[1]);
      if (i < numLayers) layerBytes[i] = (layerBytes[i] as number) + t.sizeBytes;
    } else if (t.name === 'model.embed_tokens.weight') embed += t.sizeBytes;
    else if (t.name === 'lm_head.weight') head += t.sizeBytes;
    else if (t.name.startsWith('model.norm.')) norm += t.sizeBytes;
  }
  const sizes: ModelSizes = { layerBytes, firstBytes: embed, lastBytes: norm + (head > 0 ? head : embed) };
  if (form === undefined) return sizes;
  const largest = largestHeldBuffers(index.tensors, numLayers, form);
  return { ...sizes, layerLargestBytes: largest.layers, firstLargestBytes: largest.first, lastLargestBytes: largest.last };
}
