import type { StageManifest } from '../../shared/model/manifest.js';
import { generate, mainOutput, PipelineSession, type StageExecutor, type TensorData } from '../../shared/model/pipeline.js';
import { argmax, GREEDY } from '../../shared/model/sampling.js';
import { LOGITS_FROM_ALL } from '../../shared/model/stage-graph.js';
import { Tokenizer } from '../../shared/model/tokenizer.js';
import type { CaptureOptions } from '../compute/captured-stages.js';
import { ComputeClient } from '../compute/compute-client.js';
import type { Backend, WorkerStats } from '../compute/messages.js';
import type { OrtBuild } from '../compute/ort-build.js';
import { fetchManifest, fetchVerified, type Progress } from '../compute/stage-loader.js';
import { fetchStageWeights } from '../compute/stage-weights.js';
import { webgpuAdapter } from '../compute/webgpu.js';

/** Every stage of one model in this tab: the browser's self-check, and a way to try a model alone. */
export interface LocalModel {
  readonly manifest: StageManifest;
  readonly backend: Backend;
  readonly adapter: string | null;
  /** The onnxruntime-web build the stages run on (a WebGPU one on JSPI where the browser has it). */
  readonly build: OrtBuild;
  readonly tokenizer: Tokenizer;
  /** The last position's logits [vocab] of a fresh session for `ids`, as a plain array (for automation). */
  forward(ids: number[]): Promise<number[]>;
  /** Each stage's main output (hidden states, then logits) for `ids` in a fresh session. */
  trace(ids: number[]): Promise<number[][]>;
  /** Greedy tokens after `ids`. */
  greedy(ids: number[], maxTokens: number): Promise<{ tokens: number[]; msPerToken: number }>;
  /**
   * One step of `session` through every stage, its KV caches kept in the
   * worker (on the GPU on WebGPU), as a volunteer runs: the last position's
   * logits, or with `everyRow` each position's in one call (the head on every
   * position, as a scored prompt's step runs): [ids.length × vocab].
   */
  step(session: number, ids: number[], everyRow?: boolean): Promise<number[]>;
  /**
   * One step of one stage of `session` (for automation: sessions stepped stage
   * by stage, a hostile row in a batch): token ids at stage 0, hidden states
   * [1, S, hidden] as a plain array after; the stage's main output.
   */
  stepStage(session: number, stage: number, input: number[]): Promise<number[]>;
  /** Rolls `session` back to its first `positions` positions. */
  truncate(session: number, positions: number): Promise<void>;
  /** Closes `session`, freeing its caches. */
  release(session: number): Promise<void>;
  /** What the worker holds now. */
  stats(): Promise<WorkerStats>;
  /** Loses the stages' GPU device (WebGPU; the gpu-lost fault's way), for tests: every step after fails with ERR_DEVICE_LOST. */
  loseDevice(): Promise<void>;
  /**
   * Greedy decoding in a fresh `session` through the worker's caches, timed
   * in the page: the ms of each token after the prompt (index i is position
   * ids.length + i). The session is closed after.
   */
  timeSteps(session: number, ids: number[], tokens: number): Promise<number[]>;
}

export async function pickBackend(asked: string | null): Promise<Backend> {
  if (asked === 'wasm' || asked === 'webgpu') return asked;
  return (await webgpuAdapter()) === null ? 'wasm' : 'webgpu';
}

export async function loadLocalModel(
  baseUrl: string,
  backend: Backend,
  onProgress: (p: Progress) => void,
  /** False: each session's step is its own runtime call (batching across sessions off, for comparisons). */
  batching = true,
  /** Rows to run the stages with graph capture (WebGPU, fused form: web/compute/captured-stages.ts); null: no capture. */
  capture: CaptureOptions | null = null,
): Promise<LocalModel> {
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
  await client.build(backend, manifest, weights.stages, batching, capture);
  const build = client.ortBuild;
  if (build === null) throw new Error('the compute worker loaded the stages without saying which onnxruntime-web build runs them');
  /** One step of a session through every stage, caches in the worker: the last position's logits, or every position's. */
  const step = async (session: number, ids: number[], everyRow = false): Promise<Float32Array> => {
    const last = manifest.stages.length - 1;
    let carry: TensorData = { dtype: 'int64', dims: [1, ids.length], data: BigInt64Array.from(ids, (i) => BigInt(i)) };
    for (let s = 0; s <= last; s++) carry = await client.step(session, s, carry, everyRow && s === last ? LOGITS_FROM_ALL : undefined);
    return everyRow ? (carry.data as Float32Array) : (carry.data as Float32Array).subarray(carry.data.length - manifest.model.vocabSize);
  };
  const release = async (session: number): Promise<void> => {
    client.release(session);
    await client.stats(); // the worker answers in order: the release is done
  };
  /**
   * A fresh session of the worker's caches for `f`, released after: with graph capture the worker runs only session
   * steps (captured-stages.ts), so forward, trace and greedy run as sessions there. Ids below any a caller uses.
   */
  let scratch = -1_000_000;
  const inSession = async <T>(f: (session: number) => Promise<T>): Promise<T> => {
    const session = scratch--;
    try {
      return await f(session);
    } finally {
      await release(session);
    }
  };
  /** A fresh pipeline session: stateless runs, or a session of the worker's caches under graph capture. */
  const session = <T>(f: (s: { forward(ids: readonly number[]): Promise<Float32Array> }) => Promise<T>): Promise<T> =>
    capture !== null ? inSession((id) => f({ forward: (ids) => step(id, [...ids]) })) : f(new PipelineSession(manifest, client));
  return {
    manifest,
    backend,
    adapter: client.adapter,
    build,
    tokenizer,
    async forward(ids) {
      return Array.from(await session((s) => s.forward(ids)));
    },
    async trace(ids) {
      const outputs: number[][] = [];
      if (capture !== null) {
        await inSession(async (id) => {
          let carry: TensorData = { dtype: 'int64', dims: [1, ids.length], data: BigInt64Array.from(ids, (i) => BigInt(i)) };
          for (let s = 0; s < manifest.stages.length; s++) {
            carry = await client.step(id, s, carry);
            outputs.push(Array.from(carry.data as Float32Array));
          }
        });
        return outputs;
      }
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
      const r = await session((s) =>
        generate(s, manifest, {
          promptIds: ids,
          maxTokens,
          sampling: GREEDY,
          eosTokenId: manifest.model.eosTokenId,
        }),
      );
      const decode = r.stepMs.slice(1).sort((a, b) => a - b);
      return { tokens: r.tokens, msPerToken: decode[Math.floor(decode.length / 2)] ?? Number.NaN };
    },
    step: async (session, ids, everyRow) => Array.from(await step(session, ids, everyRow)),
    async stepStage(session, stage, input) {
      const width = manifest.model.hiddenSize;
      const t: TensorData =
        stage === 0
          ? { dtype: 'int64', dims: [1, input.length], data: BigInt64Array.from(input, (i) => BigInt(i)) }
          : { dtype: 'float32', dims: [1, input.length / width, width], data: Float32Array.from(input) };
      return Array.from((await client.step(session, stage, t)).data);
    },
    truncate: (session, positions) => client.truncate(session, positions),
    release,
    stats: () => client.stats(),
    loseDevice: () => client.loseDevice(),
    async timeSteps(session, ids, tokens) {
      const ms: number[] = [];
      let logits = await step(session, ids);
      for (let i = 0; i < tokens; i++) {
        const t0 = performance.now();
        logits = await step(session, [argmax(logits)]);
        ms.push(performance.now() - t0);
      }
      await release(session);
      return ms;
    },
  };
}
