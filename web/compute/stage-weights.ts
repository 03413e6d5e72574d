// The weights of a volunteer's stages: which checkpoint tensors they need,
// fetched (or taken from the browser's cache) and verified by layer-fetch.ts,
// ready to hand to the compute worker, which builds the stage graphs.
import type { StageManifest } from '../../shared/model/manifest.js';
import type { TensorInfo } from '../../shared/model/safetensors.js';
import { stageTensorNames } from '../../shared/model/tensor-index.js';
import { fetchStageTensors, fetchTensorIndex } from './layer-fetch.js';
import { LayerFetchError } from './range-fetch.js';
import type { StageTensors } from './stage-build.js';
import type { Progress } from './stage-loader.js';
import { cacheApiStore, type TensorStore } from './tensor-store.js';

export interface StageWeights {
  readonly stages: StageTensors[];
  /** Bytes received over the network for them (0 when every tensor came from the cache). */
  readonly downloadedBytes: number;
  /** Bytes of the tensors themselves. */
  readonly tensorBytes: number;
}

/**
 * Fetches the tensors of `stages` of the model whose stage set is at `baseUrl`
 * (its manifest.json and tensors.json). `store` defaults to the Cache API.
 */
export async function fetchStageWeights(
  baseUrl: string,
  manifest: StageManifest,
  stages: readonly number[],
  onProgress?: (p: Progress) => void,
  store?: TensorStore | null,
): Promise<StageWeights> {
  const indexUrl = new URL(`${baseUrl}/tensors.json`, globalThis.location?.href).href;
  const index = await fetchTensorIndex(indexUrl);
  if (index.modelId !== manifest.modelId) {
    throw new LayerFetchError('ERR_WEIGHTS_INDEX', `${indexUrl} is for model ${index.modelId}, the manifest for ${manifest.modelId}`);
  }
  const specs = stages.map((i) => {
    const entry = manifest.stages[i];
    if (entry === undefined) throw new LayerFetchError('ERR_WEIGHTS_INDEX', `the manifest has no stage ${i}`);
    return { index: i, count: manifest.stages.length, layers: entry.layers };
  });
  const names = [...new Set(specs.flatMap((s) => stageTensorNames(manifest.model, s)))];
  const fetched = await fetchStageTensors({
    index,
    indexUrl,
    names,
    store: store === undefined ? await cacheApiStore() : store,
    ...(onProgress === undefined ? {} : { onProgress }),
  });
  const tensorBytes = [...fetched.tensors.values()].reduce((a, t) => a + t.bytes.byteLength, 0);
  return {
    stages: specs.map((s) => ({
      index: s.index,
      tensors: stageTensorNames(manifest.model, s).map((n) => fetched.tensors.get(n) as TensorInfo),
    })),
    downloadedBytes: fetched.downloadedBytes,
    tensorBytes,
  };
}
