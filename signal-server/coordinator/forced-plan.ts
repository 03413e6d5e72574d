/**
 * What each step of a session feeds, and which of its rows of logits score
 * given tokens. A generation feeds its prompt at step 0 and then a sampled
 * token a step. A scored prompt (GenerationSession.run's `forced`) is given
 * past `prompt`: step 0's last row scores `forced[0]`, and where `firstRows`
 * > 1 its rows before score the prompt's own tokens 1 … firstRows − 1 (a
 * fresh prompt's first positions in one step). The given tokens then go in
 * chunks of up to `chunk` a step, each row scoring the token after its
 * position, all but the last given token, which goes alone with the step that
 * samples the completion's first token (so that no step mixes given and
 * sampled rows). `chunk` 1: a given token a step.
 */
export class ForcedPlan {
  /** The steps whose last row's token is given (none samples), from step 0. */
  readonly steps: number;
  /** Start of each chunk step's tokens in `forced` (step s ≥ 1 feeds forced[starts[s − 1] .. starts[s])). */
  private readonly starts: number[] = [];

  constructor(
    readonly prompt: readonly number[],
    readonly forced: readonly number[],
    readonly firstRows = 1,
    readonly chunk = 1,
  ) {
    if (!Number.isInteger(chunk) || chunk < 1) throw new RangeError(`a chunk of ${chunk} tokens`);
    if (firstRows > 1 && (firstRows !== prompt.length || forced.length === 0))
      throw new RangeError(`${firstRows} rows at step 0 need a prompt of as many tokens and given tokens after it`);
    // Every given token but the last is fed by a chunk step, the last by the first sampling step.
    for (let at = 0; at < forced.length - 1; at += chunk) this.starts.push(at);
    this.starts.push(Math.max(0, forced.length - 1));
    this.steps = forced.length === 0 ? 0 : this.starts.length;
  }

  /** Whether steps after step 0 may feed several positions, each with its row of logits (SessionOpen.scoreChunks). */
  get chunked(): boolean {
    return this.chunk > 1 && this.forced.length > 1;
  }

  /**
   * The tokens `step` feeds: the prompt at step 0, a chunk of given tokens, the last given token with the first
   * sampling step, and after that `sampled`, the token the step before sampled (undefined where the plan knows).
   */
  input(step: number, sampled?: number): number[] {
    if (step === 0) return [...this.prompt];
    if (step <= this.steps) return this.forced.slice(this.starts[step - 1], step < this.steps ? this.starts[step] : undefined);
    if (sampled === undefined) throw new RangeError(`step ${step} feeds a sampled token`);
    return [sampled];
  }

  /** Rows of logits `step` carries: one per position a step of given tokens feeds (the prompt's only with `firstRows`). */
  rows(step: number): number {
    if (step === 0) return this.firstRows;
    return step < this.steps ? this.input(step).length : 1;
  }

  /** The given tokens row by row of a step before `steps`: row r scores the token after the step's position r. */
  targets(step: number): number[] {
    if (step >= this.steps) throw new RangeError(`step ${step} scores no given token`);
    const fed = this.input(step);
    // The token after the step's last position: the next step's first (the last given token for the last such step).
    return [...fed.slice(fed.length - this.rows(step) + 1), this.forced[this.starts[step] as number] as number];
  }
}
