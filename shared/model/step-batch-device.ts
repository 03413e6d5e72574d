// Several sessions' decode steps of one stage as one call where their KV
// caches live on a device (WebGPU): the same batch as step-batch.ts, but the
// pasts are gathered and the presents cut into rows by the executor's
// DeviceBatching, on the device, instead of in host arrays. What may share a
// call is what may on the host (canShareCall): the fused form any lengths
// (seqlens_k per row), the plain form equal lengths only.
//
// Padding: a row's positions past its own length in the gathered past are
// zeros (a fresh GPU buffer is zeroed) or, where a row is copied whole, its
// own stale tail (a roll-back): GroupQueryAttention reads only a row's first
// seqlens_k + 1 positions of its own row, and a plain batch has no padding.
// No row can read another session's positions.
import type { ModelConfig } from './config.js';
import type { DeviceBatching, DeviceTensor, Float32Tensor, KvFeeds } from './pipeline.js';
import { STAGE_IO, stageInputName } from './stage-graph.js';
import type { GraphForm } from './stage-graph-fused.js';
import { type BatchRow, checkPresent, fusedPositions, hostRows, rowMains, stackInputs } from './step-batch.js';

/** A KV feed of a cache: on the host (float32) or on the device. */
function kvTensor(t: KvFeeds[string] | undefined, name: string): Float32Tensor | DeviceTensor {
  if (t === undefined || (t.dtype !== 'float32' && t.dtype !== 'device')) throw new Error(`${name} is not a float32 KV tensor`);
  return t;
}

/** A batch call's feeds on the device, and the gathered tensors to dispose once the call is over. */
export interface DeviceFeeds {
  readonly feeds: KvFeeds;
  readonly gathered: readonly DeviceTensor[];
}

export function gatherDeviceFeeds(
  layers: { start: number; end: number },
  form: GraphForm,
  stage: number,
  rows: readonly BatchRow[],
  device: DeviceBatching,
): DeviceFeeds {
  const lengths = rows.map((r) => r.cache.length);
  const past = Math.max(...lengths);
  const feeds: KvFeeds = { [stageInputName(stage)]: stackInputs(rows) };
  const gathered: DeviceTensor[] = [];
  const pasts = rows.map((r) => r.cache.feeds(1));
  try {
    for (let l = layers.start; l < layers.end; l++) {
      for (const name of [STAGE_IO.pastKey(l), STAGE_IO.pastValue(l)]) {
        // The plain form's past must be exactly the rows' (equal) length: its positions come from it.
        const t = device.gather(
          pasts.map((p) => kvTensor(p[name], name)),
          lengths,
          past,
          form === 'plain',
        );
        if (t.dtype === 'device') gathered.push(t);
        feeds[name] = t;
      }
    }
  } catch (e) {
    for (const t of gathered) t.dispose();
    throw e;
  }
  if (form === 'fused') Object.assign(feeds, fusedPositions(lengths));
  return { feeds, gathered };
}

/**
 * One call's outputs cut into each row's: a copy of its main output and a
 * view of its row of each present.* (split: the batch's tensor lives until
 * every row's view is disposed, i.e. every row has stepped again or closed).
 * Every present.* is checked before any is split, so that on a malformed one
 * the caller can free them all.
 */
export function scatterDeviceOutputs(
  cfg: ModelConfig,
  layers: { start: number; end: number },
  stage: number,
  numStages: number,
  rows: readonly BatchRow[],
  outputs: KvFeeds,
  device: DeviceBatching,
): KvFeeds[] {
  const presents: [string, Float32Tensor | DeviceTensor][] = [];
  for (let l = layers.start; l < layers.end; l++) {
    for (const name of [STAGE_IO.presentKey(l), STAGE_IO.presentValue(l)]) {
      const t = kvTensor(outputs[name], name);
      checkPresent(cfg, name, t.dims, rows);
      presents.push([name, t]);
    }
  }
  const own = rowMains(outputs, stage, numStages, rows.length);
  for (const [name, t] of presents) {
    // A present on the host (a runtime that left it there) is cut as step-batch.ts cuts it.
    const views = t.dtype === 'device' ? device.split(t) : hostRows(t, rows.length);
    for (const [i, v] of views.entries()) (own[i] as KvFeeds)[name] = v;
  }
  return own;
}

/** Frees the device tensors among a call's outputs (a batch whose outputs were not taken). */
export function disposeDevice(outputs: KvFeeds): void {
  for (const t of Object.values(outputs)) if (t.dtype === 'device') t.dispose();
}
