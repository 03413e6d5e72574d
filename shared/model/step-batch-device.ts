// Several sessions' decode steps of one stage as one call where their KV
// caches live on a device (WebGPU): the same batch as step-batch.ts, but the
// pasts are gathered (here) and the presents cut into rows (scatterOutputs
// given the device) by the executor's DeviceBatching, on the device, instead
// of in host arrays. What may share a call is what may on the host
// (canShareCall): the fused form any lengths (seqlens_k per row), the plain
// form equal lengths only.
//
// Padding: a row's positions past its own length in the gathered past are
// zeros (a fresh GPU buffer is zeroed) or, where a row is copied whole, its
// own stale tail (a roll-back): GroupQueryAttention reads only a row's first
// seqlens_k + 1 positions of its own row, and a plain batch has no padding.
// No row can read another session's positions.
import type { DeviceBatching, DeviceTensor, KvFeeds } from './pipeline.js';
import { STAGE_IO, stageInputName } from './stage-graph.js';
import type { GraphForm } from './stage-graph-fused.js';
import { type BatchRow, fusedPositions, kvTensor, stackInputs } from './step-batch.js';

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

/** Frees the device tensors among a call's outputs (a batch whose outputs were not taken). */
export function disposeDevice(outputs: KvFeeds): void {
  for (const t of Object.values(outputs)) if (t.dtype === 'device') t.dispose();
}
