import type { StageManifest } from '../../shared/model/manifest.js';
import { generate, mainOutput, PipelineSession, type StageExecutor } from '../../shared/model/pipeline.js';
import { GREEDY } from '../../shared/model/sampling.js';
import { Tokenizer } from '../../shared/model/tokenizer.js';
import { ComputeClient } from '../compute/compute-client.js';
import type { Backend } from '../compute/messages.js';
import { fetchManifest, fetchVerified, type Progress } from '../compute/stage-loader.js';
import { fetchStageWeights } from '../compute/stage-weights.js';
import { webgpuAdapter } from '../compute/webgpu.js';

/** Every stage of one model in this tab: the browser's self-check, and a way to try a model alone. */
export interface LocalModel {
  readonly manifest: StageManifest;
  readonly backend: Backend;
  readonly adapter: string | null;
  readonly tokenizer: Tokenizer;
  /** Logits [ids.length × vocab] of a fresh session, as a plain array (for automation). */
  forward(ids: number[]): Promise<number[]>;
  /** Each stage's main output (hidden states, then logits) for `ids` in a fresh session. */
  trace(ids: number[]): Promise<number[][]>;
  /** Greedy tokens after `ids`. */
  greedy(ids: number[], maxTokens: number): Promise<{ tokens: number[]; msPerToken: number }>;
}

export async function pickBackend(asked: string | null): Promise<Backend> {
  if (asked === 'wasm' || asked === 'webgpu') return asked;
  return (await webgpuAdapter()) === null ? 'wasm' : 'webgpu';
}

export async function loadLocalModel(baseUrl: string, backend: Backend, onProgress: (p: Progress) => void): Promise<LocalModel> {
  const manifest = await fetchManifest(baseUrl);
  const client = new ComputeClient();
  // The runtime starts (WebAssembly compilation) while the weights download.
  const prepared = client.prepare(backend);
  const weights = await fetchStageWeights(
    baseUrl,
    manifest,
    manifest.stages.map((s) => s.index),
    onProgress,
  );
  const dec = new TextDecoder();
  const tokJson = dec.decode(await fetchVerified(baseUrl, manifest.tokenizer, onProgress));
  const tokCfg = manifest.tokenizerConfig === null ? null : dec.decode(await fetchVerified(baseUrl, manifest.tokenizerConfig, onProgress));
  const tokenizer = Tokenizer.fromJson(`${baseUrl}/${manifest.tokenizer.file}`, tokJson, tokCfg);
  await prepared;
  await client.build(backend, manifest, weights.stages);
  return {
    manifest,
    backend,
    adapter: client.adapter,
    tokenizer,
    async forward(ids) {
      return Array.from(await new PipelineSession(manifest, client).forward(ids));
    },
    async trace(ids) {
      const outputs: number[][] = [];
      const recorder: StageExecutor = {
        async run(stage, feeds) {
          const out = await client.run(stage, feeds);
          outputs.push(Array.from(mainOutput(out, stage, manifest.stages.length).data));
          return out;
        },
      };
      await new PipelineSession(manifest, recorder).forward(ids);
      return outputs;
    },
    async greedy(ids, maxTokens) {
      const r = await generate(new PipelineSession(manifest, client), manifest, {
        promptIds: ids,
        maxTokens,
        sampling: GREEDY,
        eosTokenId: manifest.model.eosTokenId,
      });
      const decode = r.stepMs.slice(1).sort((a, b) => a - b);
      return { tokens: r.tokens, msPerToken: decode[Math.floor(decode.length / 2)] ?? Number.NaN };
    },
  };
}
