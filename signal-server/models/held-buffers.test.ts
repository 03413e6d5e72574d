// The largest buffer of each part of a real checkpoint (the tiny fixture), as
// each precision and graph form holds it, against sizes worked out by hand
// from its config (vocab 2048, hidden 48, MLP 128, 6/3 heads of 8, 512 positions).
import { describe, expect, it } from 'vitest';
import { buildTensorIndex } from '../../shared/model/tensor-index.js';
import { MODEL } from '../testing/http-swarm.js';
import { kvHeldBytes, largestHeldBuffers, logitsHeldBytes } from './held-buffers.js';
import { readModelFolder } from './model-folder.js';
import { modelSizesOf } from './model-sizes.js';

const folder = readModelFolder(MODEL);
const index = await buildTensorIndex(folder.modelId, 'model.safetensors', folder.tensors);
const model = folder.config;
const TABLE = 2048 * 48;
const KV = 3 * 512 * 8 * 4;

describe('largest held buffers', () => {
  it('f32, plain: the embedding and the head are float32 tables, a layer its KV cache at full context', () => {
    expect(kvHeldBytes(model)).toBe(KV);
    const b = largestHeldBuffers(index.tensors, 3, { model, weights: 'f32', graph: 'plain' });
    expect(b.first).toBe(TABLE * 4);
    expect(b.last).toBe(TABLE * 4);
    // The MLP weights (128 × 48 × 4 = 24 576 bytes) are smaller than one layer's past keys.
    expect(b.layers).toEqual([KV, KV, KV]);
  });

  it('f16 is float32 in memory (the Cast is folded); q8 and q4 pack the head, the embedding stays 8-bit', () => {
    expect(largestHeldBuffers(index.tensors, 3, { model, weights: 'f16', graph: 'plain' }).first).toBe(TABLE * 4);
    const q8 = largestHeldBuffers(index.tensors, 3, { model, weights: 'q8', graph: 'plain' });
    expect([q8.first, q8.last]).toEqual([TABLE, TABLE]);
    const q4 = largestHeldBuffers(index.tensors, 3, { model, weights: 'q4', graph: 'plain' });
    expect([q4.first, q4.last]).toEqual([TABLE, TABLE / 2]);
  });

  it('fused: q, k and v packed are one buffer, counted as one', () => {
    // Without the MLP weights (larger here) and with a short context, attention's weights are the largest:
    // fused, q, k and v packed: (6 + 2 × 3) × 8 outputs × 48 inputs × 4 bytes = 18 432; plain, q (or o) alone: 48 × 48 × 4.
    const short = { ...model, maxPositions: 8 };
    const attention = index.tensors.filter((t) => !t.name.includes('.mlp.'));
    const fused = largestHeldBuffers(attention, 3, { model: short, weights: 'f32', graph: 'fused' });
    const plain = largestHeldBuffers(attention, 3, { model: short, weights: 'f32', graph: 'plain' });
    expect(fused.layers).toEqual([18_432, 18_432, 18_432]);
    expect(plain.layers).toEqual([9_216, 9_216, 9_216]);
    // With them, an MLP weight (128 × 48 × 4) is the largest in both forms.
    expect(largestHeldBuffers(index.tensors, 3, { model: short, weights: 'f32', graph: 'fused' }).layers).toEqual([24_576, 24_576, 24_576]);
  });

  it('the logits are one row a session (the head on the last position only), counted with the last stage', () => {
    expect(logitsHeldBytes(model)).toBe(2048 * 4);
    // Smaller than the head's weight even packed at q4 (2048 × 48 / 2): the largest only where no head weight is counted.
    expect(largestHeldBuffers(index.tensors, 3, { model, weights: 'q4', graph: 'plain' }).last).toBe(TABLE / 2);
    const headless = index.tensors.filter((t) => t.name !== 'lm_head.weight' && t.name !== 'model.embed_tokens.weight');
    expect(largestHeldBuffers(headless, 3, { model, weights: 'f32', graph: 'plain' }).last).toBe(2048 * 4);
  });

  it('model sizes carry them when told the form, and not otherwise', () => {
    const sizes = modelSizesOf(index, 3, { model, weights: 'f32', graph: 'plain' });
    expect(sizes.firstLargestBytes).toBe(TABLE * 4);
    expect(sizes.layerLargestBytes).toEqual([KV, KV, KV]);
    expect(modelSizesOf(index, 3).layerLargestBytes).toBeUndefined();
  });
});
