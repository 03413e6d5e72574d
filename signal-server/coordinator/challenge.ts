/**
 * Challenge steps: inputs whose right output the coordinator knows because its
 * own reference runner computed it from the stage files it serves. A
 * volunteer counts as ready only after answering one for its stage, and is
 * spot-checked the same way now and then. Inputs are fresh random tokens (and,
 * past stage 0, the hidden states the reference computes from them), so an
 * answer cannot be replayed or guessed.
 */
import type { StageManifest } from '../../shared/model/manifest.js';
import { freshFeeds, mainOutput, type StageExecutor, type TensorData } from '../../shared/model/pipeline.js';
import { fingerprint } from '../../shared/vote/fingerprint.js';

/** Positions of a challenge's input: several, so that attention over the KV cache is exercised. */
export const CHALLENGE_POSITIONS = 4;

export interface Challenge {
  readonly stage: number;
  /** Stage 0's input (token ids); empty for other stages. */
  readonly tokens: number[];
  /** Other stages' input: hidden states [1, positions, hidden]; empty for stage 0. */
  readonly hidden: Float32Array;
  /** The fingerprint of the stage's right output on that input. */
  readonly expected: number[];
}

/** Makes challenges with known answers. */
export interface ChallengeOracle {
  /** A challenge for `stage`; `wanted` is asked when its turn comes, so that nothing is computed for a volunteer gone meanwhile. */
  make(stage: number, wanted?: () => boolean): Promise<Challenge>;
  /** Gives back what its runner holds (the server closes, or its partition was evicted); a later `make` fails. */
  release?(): Promise<void>;
}

/** The volunteer a challenge was for left before its turn: nothing was computed. */
export class ChallengeMoot extends Error {}

/** Challenges computed by the server's own runner of the served stage files. */
export class ReferenceOracle implements ChallengeOracle {
  /** One run at a time: a runtime session is not re-entrant. */
  private queue: Promise<unknown> = Promise.resolve();

  private released = false;

  constructor(
    private readonly manifest: StageManifest,
    private readonly executor: StageExecutor & { release?(): Promise<void> },
    private readonly random: () => number = Math.random,
  ) {}

  make(stage: number, wanted: () => boolean = () => true): Promise<Challenge> {
    const run = this.queue.then(() => {
      if (this.released) throw new Error(`the runner of these stages was released: no challenge for stage ${stage}`);
      if (!wanted()) throw new ChallengeMoot(`the challenge for stage ${stage} is no longer wanted`);
      return this.compute(stage);
    });
    this.queue = run.catch(() => {});
    return run;
  }

  /** Releases the runner once the challenges queued before have run. */
  release(): Promise<void> {
    const done = this.queue.then(async () => {
      this.released = true;
      await this.executor.release?.();
    });
    this.queue = done.catch(() => {});
    return done;
  }

  private async compute(stage: number): Promise<Challenge> {
    const { model, stages } = this.manifest;
    if (stages[stage] === undefined) throw new RangeError(`no stage ${stage}`);
    const tokens = Array.from({ length: CHALLENGE_POSITIONS }, () => Math.floor(this.random() * model.vocabSize));
    let carry: TensorData = { dtype: 'int64', dims: [1, tokens.length], data: BigInt64Array.from(tokens, (t) => BigInt(t)) };
    let hidden = new Float32Array(0);
    for (let k = 0; k <= stage; k++) {
      const entry = stages[k];
      if (entry === undefined) throw new RangeError(`no stage ${k}`);
      if (k === stage && k > 0 && carry.dtype === 'float32') hidden = carry.data.slice();
      const out = await this.executor.run(k, freshFeeds(this.manifest, k, carry));
      carry = mainOutput(out, k, stages.length);
    }
    return { stage, tokens: stage === 0 ? tokens : [], hidden, expected: fingerprint(carry.data as Float32Array) };
  }
}
