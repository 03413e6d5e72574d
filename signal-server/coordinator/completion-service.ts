import type { ChatMessage, Tokenizer, TokenizerSpecials } from '../../shared/model/tokenizer.js';
import type { StageVote } from '../../shared/protocol/messages.js';
import { majority } from '../../shared/vote/quorum.js';
import type { Completion, CompletionRequest, ScoredToken, TokenUpdate } from './coordinator-types.js';
import { GenerationError, wireErrorOf } from './generation.js';
import { checkPromptLeavesRoom } from './generation-error.js';
import { ServiceStats, type ServiceStatus } from './service-stats.js';
import { checkPromptIds, checkSampling, type SessionRunner } from './session-runner.js';
import type { SwarmState } from './swarm-state.js';
import { TextStream } from './text-stream.js';

/** The token ids of a request, run through the swarm (SessionRunner.runIds). */
export type RunIds = SessionRunner['runIds'];

/**
 * Completions of text: the prompt tokenized, its tokens run through the
 * swarm, each one streamed as it is accepted, stop sequences honoured, and
 * what the service achieved recorded for /api/status.
 */
export class CompletionService {
  private readonly stats = new ServiceStats();

  constructor(
    private readonly s: SwarmState,
    private readonly runIds: RunIds,
  ) {}

  /** The prompt for a chat, by the model's chat template (with its generation prompt unless told otherwise). */
  chatPrompt(messages: readonly ChatMessage[], addGenerationPrompt?: boolean): string {
    return this.tokenizer().chatPrompt(messages, addGenerationPrompt);
  }

  /** A text's token ids, as a text prompt is run. */
  encode(text: string): number[] {
    return this.tokenizer().encode(text);
  }

  /** The tokenizer's special tokens and chat template, the vocabulary and the positions. */
  tokenizerInfo(): { specials: TokenizerSpecials; vocabSize: number; maxPositions: number } {
    const { vocabSize, maxPositions } = this.s.model.manifest.model;
    return { specials: this.tokenizer().special, vocabSize, maxPositions };
  }

  /** The text of token ids; throws ERR_BAD_REQUEST (param `field`: the request's field of them) for an id the model does not have. */
  promptText(ids: readonly number[], field = 'prompt'): string {
    checkPromptIds(ids, this.s.model.manifest.model.vocabSize, field);
    return this.tokenizer().decode(ids);
  }

  /**
   * Generates through the swarm; `onToken` receives each accepted token, with its votes, as it comes, and
   * `onScored` (with `scorePrompt`) each of the prompt's tokens before them.
   */
  async complete(req: CompletionRequest, onToken?: (u: TokenUpdate) => void, onScored?: (u: ScoredToken) => void): Promise<Completion> {
    /** From when the time to the first token counts: the request's start, or a scored prompt's last position. */
    let start = performance.now();
    let ttftMs: number | null = null;
    const msPerToken: number[] = [];
    let tokens = 0;
    let verifiedTokens = 0;
    let serverTokens = 0;
    const seen = (u: TokenUpdate) => {
      if (ttftMs === null) ttftMs = performance.now() - start;
      else msPerToken.push(u.stepMs);
      tokens += 1;
      if (u.verified) verifiedTokens += 1;
      if (u.votes.some((v) => v.server)) serverTokens += 1;
      onToken?.(u);
    };
    try {
      // A scored prompt's positions come before the first token: its time counts from the last of them.
      const scored = (u: ScoredToken) => {
        start = performance.now();
        onScored?.(u);
      };
      const c = await this.generate(req, seen, scored);
      for (const o of this.s.observers) o.onGeneration?.('ok');
      this.stats.record({ ok: true, ttftMs, msPerToken, tokens, verifiedTokens, serverTokens });
      return c;
    } catch (e) {
      const code = wireErrorOf(e).code;
      for (const o of this.s.observers) o.onGeneration?.(code);
      // The client's own doing (a bad request, a cancel) is no failure of the service.
      if (code !== 'ERR_BAD_REQUEST' && code !== 'ERR_CANCELLED')
        this.stats.record({ ok: false, ttftMs, msPerToken, tokens, verifiedTokens, serverTokens });
      throw e;
    }
  }

  /** What the service achieved over the last 5 minutes and hour, and the volunteers ready per stage now: for /api/status. */
  /** `routablePerStage`: RoutePicker.routable of each stage (the coordinator's). */
  serviceStatus(routablePerStage: readonly number[]): ServiceStatus {
    const ready = new Array<number>(this.s.model.numStages).fill(0);
    for (const v of this.s.registry.all()) if (v.ready) ready[v.stage] = (ready[v.stage] ?? 0) + 1;
    return {
      modelId: this.s.model.modelId,
      redundancy: this.s.options.redundancy,
      volunteers: this.s.registry.size,
      readyPerStage: ready,
      routablePerStage,
      fallback: {
        mode: this.s.fallback?.mode ?? 'off',
        maxSessions: this.s.fallback?.options.maxSessions ?? 0,
        sessions: this.s.fallback?.busy ?? 0,
      },
      windows: this.stats.windows(),
    };
  }

  private async generate(
    req: CompletionRequest,
    onToken?: (u: TokenUpdate) => void,
    onScored?: (u: ScoredToken) => void,
  ): Promise<Completion> {
    if (this.s.closing) throw new GenerationError('ERR_SHUTTING_DOWN', 'the server is shutting down');
    const tokenizer = this.tokenizer();
    const r = this.s.options.redundancy;
    // Ids are checked against the vocabulary where every session starts (SessionRunner.runSession), as the settings are.
    const promptTokens = req.promptIds === undefined ? tokenizer.encode(req.prompt) : [...req.promptIds];
    // No max_tokens given (a chat): what the context leaves after the prompt; a prompt that leaves none is refused.
    if (req.fitToContext === true) checkPromptLeavesRoom(promptTokens.length, this.s.model.manifest.model.maxPositions);
    const maxTokens =
      req.fitToContext === true
        ? Math.max(1, Math.min(req.maxTokens, this.s.model.manifest.model.maxPositions - promptTokens.length))
        : req.maxTokens;
    // The prompt's last ids that begin a character it leaves unfinished: decoded ahead of the completion's.
    const before = req.promptIds?.slice(req.promptIds.length - (req.unfinishedIds ?? 0)) ?? [];
    const stream = new TextStream((ids) => tokenizer.decode(ids), req.stop ?? [], true, before);
    const sofar: number[] = [];
    let verified = true;
    const agreed = (votes: readonly StageVote[]) => r >= 2 && votes.every((v) => !v.server && v.agreed >= majority(r));
    const score = req.scorePrompt === true && promptTokens.length > 0;
    if (score) onScored?.({ position: 0, token: promptTokens[0] as number, logits: null, votes: [], verified: true, stepMs: 0 });
    // Nothing to compute: a one-token prompt scored, nothing generated (its id and settings checked as a session's are).
    if (score && promptTokens.length === 1 && maxTokens === 0) {
      checkPromptIds(promptTokens, this.s.model.manifest.model.vocabSize);
      checkSampling(req.sampling, this.s.model.manifest.model.vocabSize);
      stream.finish([]);
      return { promptTokens, tokens: [], text: stream.text, finishReason: 'length', route: [], redundancy: r, verified: r >= 2 };
    }
    const { result, route } = await this.runIds(
      promptTokens,
      maxTokens,
      req.sampling,
      req.signal,
      (token, rec, session) => {
        sofar.push(token);
        const piece = stream.push(sofar);
        const ok = agreed(rec.votes);
        verified &&= ok;
        onToken?.({
          index: sofar.length - 1,
          token,
          text: piece,
          votes: rec.votes,
          verified: ok,
          redundancy: r,
          logits: rec.logits,
          ...(rec.logSumExp === undefined ? {} : { logSumExp: rec.logSumExp }),
          route: session.route.map((ids) => [...ids]),
          stepMs: rec.ms,
          computeMs: rec.computeMs,
        });
        return stream.stopped;
      },
      req.client,
      score
        ? (position, rec) => {
            const ok = agreed(rec.votes);
            verified &&= ok;
            onScored?.({
              position,
              token: rec.token,
              logits: rec.logits,
              ...(rec.logSumExp === undefined ? {} : { logSumExp: rec.logSumExp }),
              votes: rec.votes,
              verified: ok,
              stepMs: rec.ms,
            });
          }
        : undefined,
    );
    stream.finish(result.tokens);
    // The end-of-text draw that ended it is part of the answer (where it stops), voted on as a token is.
    if (result.end !== undefined) verified &&= agreed(result.end.votes);
    return {
      promptTokens,
      tokens: result.tokens,
      text: stream.text,
      finishReason: result.finishReason,
      route,
      redundancy: r,
      verified: verified && r >= 2,
      ...(result.end === undefined
        ? {}
        : {
            end: {
              token: result.end.token,
              logits: result.end.logits,
              ...(result.end.logSumExp === undefined ? {} : { logSumExp: result.end.logSumExp }),
            },
          }),
    };
  }

  private tokenizer(): Tokenizer {
    const t = this.s.model.tokenizer;
    if (t === null) throw new GenerationError('ERR_BAD_REQUEST', 'this coordinator has no tokenizer: send token ids');
    return t;
  }
}
