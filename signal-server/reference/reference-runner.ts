import type { StageManifest } from '../../shared/model/manifest.js';
import type { Partition } from '../../shared/model/partition.js';
import { type GenerateResult, generate, PipelineSession, type StageExecutor } from '../../shared/model/pipeline.js';
import type { WeightPrecision } from '../../shared/model/quantize.js';
import type { SamplingParams } from '../../shared/model/sampling.js';
import type { GraphForm } from '../../shared/model/stage-graph-fused.js';
import { Tokenizer } from '../../shared/model/tokenizer.js';
import { STAGE_CACHE } from '../defaults.js';
import { type BuildChoice, ensureStages, loadStageSet } from '../models/model-folder.js';
import { OrtExecutor } from './ort-executor.js';

/** A model's stages loaded (verified) into one process: the swarm's oracle. */
export class ReferenceRunner {
  private constructor(
    readonly manifest: StageManifest,
    readonly tokenizer: Tokenizer,
    private readonly executor: OrtExecutor,
  ) {}

  /** Opens a built stage directory (manifest.json + files), verifying sizes and sha256. */
  static async fromStageDir(dir: string, threads = 1): Promise<ReferenceRunner> {
    const set = await loadStageSet(dir);
    const tokenizer = Tokenizer.fromJson(`${dir}/${set.manifest.tokenizer.file}`, set.tokenizerJson, set.tokenizerConfigJson);
    return new ReferenceRunner(set.manifest, tokenizer, await OrtExecutor.create(set.stageBytes, threads));
  }

  /** The stages' executor (for callers that keep KV caches themselves, e.g. a CachingExecutor). */
  get stageExecutor(): StageExecutor {
    return this.executor;
  }

  /** Builds (or reuses) the stages of a Hugging Face model folder, then opens them. */
  static async fromModelDir(
    modelDir: string,
    partition: Partition,
    cacheRoot = STAGE_CACHE,
    choice: BuildChoice = {},
  ): Promise<ReferenceRunner> {
    const { dir } = await ensureStages(modelDir, partition, cacheRoot, choice);
    return ReferenceRunner.fromStageDir(dir);
  }

  /** A fresh generation context with empty KV caches. */
  session(): PipelineSession {
    return new PipelineSession(this.manifest, this.executor);
  }

  async generateIds(
    promptIds: readonly number[],
    maxTokens: number,
    sampling: SamplingParams,
    onToken?: (t: number) => void,
  ): Promise<GenerateResult> {
    return generate(this.session(), this.manifest, {
      promptIds,
      maxTokens,
      sampling,
      eosTokenId: this.manifest.model.eosTokenId,
      ...(onToken === undefined ? {} : { onToken }),
    });
  }

  async close(): Promise<void> {
    await this.executor.release();
  }
}

export interface GenerateTextOptions {
  readonly modelDir: string;
  readonly partition: Partition;
  /** Weight precision of the stages (f32 when absent). */
  readonly weights?: WeightPrecision;
  readonly graph?: GraphForm;
  readonly prompt: string;
  readonly maxTokens: number;
  readonly sampling: SamplingParams;
  /** Called with each new piece of decoded text as tokens arrive. */
  readonly onText?: ((piece: string) => void) | undefined;
}

export interface GenerateTextResult extends GenerateResult {
  readonly promptTokens: number[];
  readonly text: string;
}

export async function generateText(o: GenerateTextOptions): Promise<GenerateTextResult> {
  const runner = await ReferenceRunner.fromModelDir(o.modelDir, o.partition, STAGE_CACHE, {
    ...(o.weights === undefined ? {} : { weights: o.weights }),
    ...(o.graph === undefined ? {} : { graph: o.graph }),
  });
  try {
    const promptTokens = runner.tokenizer.encode(o.prompt);
    let shown = '';
    const sofar: number[] = [];
    const r = await runner.generateIds(promptTokens, o.maxTokens, o.sampling, (t) => {
      sofar.push(t);
      // Decode the whole continuation each time so that characters split across tokens come out whole.
      const text = runner.tokenizer.decode(sofar);
      if (!text.endsWith('\uFFFD') && text.startsWith(shown)) {
        o.onText?.(text.slice(shown.length));
        shown = text;
      }
    });
    const text = runner.tokenizer.decode(r.tokens);
    if (text.startsWith(shown) && text.length > shown.length) o.onText?.(text.slice(shown.length));
    return { ...r, promptTokens, text };
  } finally {
    await runner.close();
  }
}
