import { type SamplingParams, type SamplingProblem, samplingError, usesHistory } from '../../shared/model/sampling.js';
import type { WireErrorCode } from '../../shared/protocol/errors.js';
import { isServerPeer, maxScoreRows } from '../../shared/protocol/messages.js';
import { majority } from '../../shared/vote/quorum.js';
import { scoredFormRows, scoredFormsFit } from '../../shared/vote/top-logits.js';
import { GenerationError, GenerationSession, type StepRecord } from './generation.js';
import { checkPromptFits, RefusedAsFull } from './generation-error.js';
import { MAX_HAND_BACKS, servedStages } from './hand-back.js';
import { NO_SHOW_WINDOW } from './no-show-window.js';
import { MAX_REPLAYS, ReplayOnNewPartition, replayReason } from './repartition.js';
import type { GenerationResult, NoShow } from './session-types.js';
import { carriedOn } from './silent-members.js';
import { established, linkOf, type SwarmState } from './swarm-state.js';

/** Sessions not joined (or refused) before a volunteer is evicted. */
export const MAX_NO_SHOWS = 3;
/** How long a replayed request waits for the new partition to serve (its volunteers load and prove their stages). */
export const REPLAY_ROUTE_WAIT_MS = 60_000;
/**
 * How long, with the fallback on, a replay waits for the volunteers that load and prove a stage of the new partition
 * again (they had proved one before) where they will give it r clients, rather than take the server for that stage
 * (RouteWait.readyingUntil). A switch re-challenges every volunteer, so at the replay's first look no stage had r
 * ready: before, the fallback took every stage at once and computed the rest of the request, labelled, while the
 * volunteers were ready again a fraction of a second later (a volunteer's trial: one tab paused; in
 * signal-server/pause-replay.test.ts one volunteer of 4 on 2 stages × r = 2 leaves, and the server computed 77 of
 * 80 tokens). Past it, the fallback takes a stage still short, as before.
 */
export const REPLAY_READYING_WAIT_MS = 10_000;
/** A replay's route wait, from now: at least REPLAY_ROUTE_WAIT_MS, and REPLAY_READYING_WAIT_MS of it for readying volunteers. */
function replayWait(routeWaitMs: number): RouteWait {
  const ms = Math.max(routeWaitMs, REPLAY_ROUTE_WAIT_MS);
  const now = Date.now();
  return { until: now + ms, ms, readyingUntil: now + Math.min(ms, REPLAY_READYING_WAIT_MS) };
}

/** The pause before another route is sought for a session whose replicas refused it as full. */
const FULL_RETRY_MS = 100;
/** Failures of a session that a re-partition under way (or done meanwhile) makes good by a replay. */
const REPLAYED_FAILURES: ReadonlySet<WireErrorCode> = new Set<WireErrorCode>(['ERR_NO_QUORUM', 'ERR_STEP_TIMEOUT', 'ERR_NO_ROUTE']);

/**
 * How long a session may wait for its route: until `until` (ms since the epoch), the end of a request's route
 * wait of `ms`, which a refusal names (a session retried after "full" refusals has less of it left).
 */
export interface RouteWait {
  readonly until: number;
  readonly ms: number;
  /**
   * A replay's: until then (ms since the epoch), a stage short of r ready volunteers that volunteers given it, which
   * proved a stage before, would bring to r clients once ready is waited for rather than given to the fallback
   * (REPLAY_READYING_WAIT_MS). Absent: the fallback takes a short stage at once.
   */
  readonly readyingUntil?: number;
}

/**
 * Where a request's session (its first, or a replay) starts: the prompt it prefills and the prompt tokens it
 * feeds in chunks after it (a scored prompt). A replay goes on from what the request has: the prompt's positions
 * scored so far are its prefill, the rest forced; once every position is scored, the tokens generated follow.
 */
export function resumeAt(
  prompt: readonly number[],
  scoring: boolean,
  positionsScored: number,
  generated: readonly number[],
): { prompt: number[]; forced: number[] } {
  const head = scoring ? Math.min(prompt.length, 1 + positionsScored) : prompt.length;
  return { prompt: [...prompt.slice(0, head), ...generated], forced: prompt.slice(head) };
}

/**
 * How many of a scored prompt's first positions step 0 runs, a row of logits each (GenerationSession.run's
 * scoreRows): all but the last position (whose token step 1 feeds, so that every session has a step), at most
 * maxScoreRows (and `most`, the operator's); 1 where that leaves fewer than 2.
 */
export function firstScoreRows(promptLength: number, vocabSize: number, most = Number.POSITIVE_INFINITY): number {
  const rows = Math.min(scoreChunk(vocabSize, most), promptLength - 1);
  return rows >= 2 ? rows : 1;
}

/**
 * The most of a scored prompt's given tokens a step after step 0 (GenerationSession.run's chunk): scoredFormRows
 * where its rows go as scored forms (top-logits.ts), else maxScoreRows (whole rows in a message), or `most`.
 */
export function scoreChunk(vocabSize: number, most = Number.POSITIVE_INFINITY): number {
  const rows = scoredFormsFit(vocabSize) ? scoredFormRows(vocabSize) : maxScoreRows(vocabSize);
  return Math.max(1, Math.floor(Math.min(rows, most)));
}

/** What running sessions need of the coordinator's other parts. */
export interface RunnerHooks {
  /** A route for a new session (RoutePicker). */
  pickRoute(sessionId: number, signal: AbortSignal | undefined, wait: RouteWait): Promise<string[][]>;
  /** Spares for a stage of a running session, and the server's own replica of a stage (RoutePicker). */
  spares(stage: number, exclude: ReadonlySet<string>, alongside: readonly string[]): string[];
  serverReplica(sessionId: number, stage: number): string | null;
  /** Evicts a volunteer (Roster). */
  expel(id: string, code: WireErrorCode, reason: string, ban: boolean): void;
  /** Spot-checks the replicas of a finished session (Readiness). */
  spotCheck(ids: readonly string[]): void;
  /** Whether a re-partition is being built now (a failure under it is replayed). */
  repartitioning(): boolean;
  /** A route of volunteers for a running session's route that has stages the server computes, or null (RoutePicker). */
  handBackRoute(route: readonly (readonly string[])[]): string[][] | null;
}

/**
 * Sessions of requests: each opened on a route, its peers linked while it
 * lives, replicas that leave failed over, and the request replayed when a
 * re-partition comes under it.
 */
export class SessionRunner {
  /** Each live session's way of linking two peers (it unlinks them when it ends). */
  private readonly sessionLinks = new Map<number, (a: string, b: string) => void>();
  private nextSessionId = 1;
  /** Requests replayed on a new partition since the start. */
  replays = 0;
  /** Sessions whose stages the server computed that handed them back to volunteers, since the start (hand-back.ts). */
  handBacks = 0;
  /** Steps rolled back because stage 0 computed on a mesh token the coordinator did not verify, over finished sessions. */
  meshRollBacks = 0;
  /** Steps of scored prompts whose tokens went to stage 0 before they began, over finished sessions. */
  inputsAhead = 0;

  constructor(
    private readonly s: SwarmState,
    private readonly h: RunnerHooks,
  ) {}

  /**
   * Runs token ids through a route of the swarm, with every rule of a request
   * (admission, route choice, fail-over, eviction): the in-process test swarm
   * and the benchmarks call it without a tokenizer. `onStep` returns true to
   * stop after that token.
   *
   * With `scored`, the prompt is scored first: its tokens go up to
   * maxScoreRows a step, each row of a step's agreed logits (the distribution
   * of the token that follows) to `scored` with the position it predicts, before any token is
   * sampled. Such a session has no mesh loop (its last stage would sample
   * where the prompt gives the token).
   */
  async runIds(
    promptTokens: readonly number[],
    maxTokens: number,
    sampling: SamplingParams,
    signal: AbortSignal | undefined,
    onStep: (token: number, record: StepRecord, session: GenerationSession) => boolean | undefined,
    client?: string,
    scored?: (position: number, record: StepRecord) => void,
  ): Promise<{ result: GenerationResult; route: string[][]; session: GenerationSession }> {
    const done: number[] = [];
    /** Prompt positions scored so far (from position 1). */
    let positions = 0;
    const routeWait: RouteWait = { until: Date.now() + this.s.options.routeWaitMs, ms: this.s.options.routeWaitMs };
    /** Replays since the request last moved on (a token or a scored position accepted): MAX_REPLAYS in a row at most. */
    let stalled = 0;
    /** Sessions of this request that handed the server's stages back to volunteers: MAX_HAND_BACKS at most. */
    let handBacks = 0;
    /** The route of volunteers the session in flight hands its server's stages back to, once set (at a token). */
    const handBack: { route: string[][] | null } = { route: null };
    for (let replays = 0; ; replays++) {
      const epoch = this.s.epoch;
      // The session before this one handed back: this one opens on the route chosen for it then.
      const handedTo = handBack.route;
      handBack.route = null;
      const progress = done.length + positions;
      // A fresh scored prompt's first positions in one step; a replay prefills what was scored, then goes on in chunks.
      const rows =
        scored !== undefined && positions === 0 && done.length === 0
          ? firstScoreRows(promptTokens.length, this.s.model.manifest.model.vocabSize, this.s.options.scoreRows)
          : 1;
      const resume = resumeAt(promptTokens, scored !== undefined, Math.max(positions, rows - 1), done);
      try {
        const out = await this.runSession(
          resume.prompt,
          maxTokens - done.length,
          sampling,
          signal,
          done.length,
          // A replay waits for the new partition's volunteers to load and prove their stages.
          replays > 0 ? replayWait(this.s.options.routeWaitMs) : routeWait,
          (token, rec, session) => {
            if (rec.forced === true) {
              positions += 1;
              scored?.(positions, rec);
              return undefined;
            }
            done.push(token);
            const stop = onStep(token, rec, session);
            if (stop === true || done.length >= maxTokens || handBacks >= MAX_HAND_BACKS) return stop;
            // Once a token, at most: where every stage the server computes has r ready volunteers that a new route
            // could take, this session ends here, and the next goes on from its tokens on that route.
            handBack.route = this.handBackTo(session, epoch, signal);
            return handBack.route !== null || stop;
          },
          client,
          resume.forced,
          rows,
          scored === undefined ? 1 : scoreChunk(this.s.model.manifest.model.vocabSize, this.s.options.scoreRows),
          handedTo,
        );
        // Set by the step callback during the session (narrowed to null here by the assignment before it).
        const next = handBack.route as string[][] | null;
        if (next !== null) {
          handBacks += 1;
          this.handBacks += 1;
          const stages = servedStages(out.route);
          this.s.log(
            `handing stage${stages.length === 1 ? '' : 's'} ${stages.join(', ')} of a request back to volunteers after ${done.length} tokens (hand-back ${handBacks} of at most ${MAX_HAND_BACKS}; session ${out.session.sessionId} ends, the request goes on from its tokens on ${next.map((ids) => ids.join(' ')).join(' | ')})`,
          );
          continue;
        }
        // Not for a session that hands back: the line above says it ended, and why.
        this.s.log(`session ${out.session.sessionId}: ${out.result.tokens.length} tokens, ${out.result.finishReason}`);
        return { ...out, result: { ...out.result, tokens: [...done] } };
      } catch (e) {
        // Its replicas were full (another server's sessions counted late): another route, within the route wait.
        if (e instanceof RefusedAsFull && replays === 0 && Date.now() < routeWait.until && signal?.aborted !== true && !this.s.closing) {
          this.s.log(`waiting for another route: ${e.message}, refused as full`);
          // Not at once: the same replica may look free here until its count is published again.
          await new Promise((resolve) => setTimeout(resolve, FULL_RETRY_MS));
          replays -= 1;
          continue;
        }
        // Re-partitioned under it, or failed by the departure that re-partitions the model: the same request
        // again on the new partition, its tokens so far prefilled. So too where a session that took the server's
        // stages back failed (its volunteers gone, the fallback's seats taken meanwhile): the fallback may take a
        // stage again, rather than fail a request that would have gone on with the server.
        const repartitioned =
          e instanceof ReplayOnNewPartition ||
          (e instanceof GenerationError && REPLAYED_FAILURES.has(e.code) && (this.h.repartitioning() || this.s.epoch !== epoch));
        const replay = repartitioned || (e instanceof GenerationError && REPLAYED_FAILURES.has(e.code) && handedTo !== null);
        if (done.length + positions > progress) stalled = 0;
        if (!replay || stalled >= MAX_REPLAYS || signal?.aborted === true || this.s.closing) throw e;
        stalled += 1;
        this.replays += 1;
        this.s.log(
          `replaying a request after ${done.length} tokens (${replayReason(e)}) on ${repartitioned ? 'the new partition' : 'another route, after a hand-back'} (replay ${replays + 1}; ${stalled} of at most ${MAX_REPLAYS} in a row without a new token)`,
        );
      }
    }
  }

  /** One session of a request: `sampledBefore` tokens of it came from sessions before (replays). */
  private async runSession(
    promptTokens: readonly number[],
    maxTokens: number,
    sampling: SamplingParams,
    signal: AbortSignal | undefined,
    sampledBefore: number,
    routeWait: RouteWait,
    onStep: (token: number, record: StepRecord, session: GenerationSession) => boolean | undefined,
    client: string | undefined,
    /** Prompt tokens fed after `promptTokens`, scored (see runIds). */
    forced: readonly number[],
    /** Rows of logits step 0 carries (GenerationSession.run's scoreRows). */
    scoreRows: number,
    /** The most given tokens a step after step 0 (GenerationSession.run's chunk). */
    chunk: number,
    /** A route chosen already (a hand-back's, chosen as a new route is, a moment before): no route is sought. */
    chosen: string[][] | null = null,
  ): Promise<{ result: GenerationResult; route: string[][]; session: GenerationSession }> {
    if (this.s.closing) throw new GenerationError('ERR_SHUTTING_DOWN', 'the server is shutting down');
    const { manifest } = this.s.model;
    const r = this.s.options.redundancy;
    checkPromptIds([...promptTokens, ...forced], manifest.model.vocabSize);
    checkSampling(sampling, manifest.model.vocabSize);
    checkPromptFits(promptTokens.length + forced.length, maxTokens, manifest.model.maxPositions);
    const sessionId = this.s.options.newSessionId?.() ?? this.nextSessionId++;
    if (client !== undefined) this.s.sessionClients.set(sessionId, client);
    let route: string[][];
    try {
      route = chosen ?? (await this.h.pickRoute(sessionId, signal, routeWait));
    } catch (e) {
      this.s.fallback?.release(sessionId);
      this.s.sessionClients.delete(sessionId);
      throw e;
    }
    // Signalling is relayed between these pairs while the session lives, and no longer.
    const linked: [string, string][] = [];
    const link = (a: string, b: string) => {
      this.s.links.link(a, b);
      linked.push([a, b]);
    };
    this.sessionLinks.set(sessionId, link);
    for (let s = 0; s + 1 < route.length; s++) for (const a of route[s] as string[]) for (const b of route[s + 1] as string[]) link(a, b);
    // With penalties a token depends on the completion so far, which the last stage's replicas do not hold:
    // such a session's tokens go through the coordinator.
    // A scored prompt's tokens are given, not sampled: they too go through the coordinator.
    const meshLoop = (this.s.options.meshLoop ?? true) && !usesHistory(sampling) && forced.length === 0;
    // Its tokens are known before their steps, though: they go to stage 0 ahead, where the stages may run ahead.
    const scoreAhead = (this.s.options.meshLoop ?? true) && forced.length > 0;
    // The mesh loop: the last stage's replicas reach stage 0's (a one-stage model's replicas reach each other).
    if (meshLoop) for (const a of route[route.length - 1] ?? []) for (const b of route[0] ?? []) if (a !== b) link(a, b);
    const send = (v: string) => linkOf(this.s, v);
    const session = new GenerationSession(
      sessionId,
      route,
      manifest,
      {
        open: (v, m) => send(v)?.send('session:open', m),
        update: (v, m) => send(v)?.send('session:update', m),
        input: (v, m) => send(v)?.send('step:input', m),
        close: (v, id, steps) => send(v)?.send('session:close', { sessionId: id, steps }),
      },
      this.s.options.timeouts,
      this.s.audit,
      {
        spares: (stage, exclude, alongside) => this.h.spares(stage, exclude, alongside),
        link: (stage, id) => this.linkNeighbours(session, stage, id, link, meshLoop),
        log: (line) => this.s.log(line),
        noShow: (id, why = 'absent') => this.noShow(id, sessionId, why),
        takeOut: (id) => this.failOver(session, id, 'sent too few results'),
        refill: (id) => this.refill(session, id),
        showed: (id) => {
          const member = this.s.members.get(id);
          member?.noShows.showed(sessionId);
          // The key's kept misses (record-memory.ts) fall out as any of its tabs serves, not only the one judged.
          if (member !== undefined) this.s.records.showed(member.keys, sessionId);
        },
        stepBegan: (step, members) => this.s.cluster?.stepBegan(sessionId, step, members),
        silenceBefore: (id) => this.s.members.get(id)?.silence ?? undefined,
        silenceAfter: (id, carry, before) => {
          const member = this.s.members.get(id);
          if (member !== undefined) member.silence = carriedOn(member.silence, before, carry);
        },
        evict: (id, code, reason) => this.h.expel(id, code, reason, true),
        serve: (stage) => this.h.serverReplica(sessionId, stage),
      },
      { redundancy: r, established: (id) => established(this.s, id), trusted: isServerPeer },
      undefined,
      meshLoop,
      (this.s.options.fanout ?? 'majority') === 'majority',
      scoreAhead,
    );
    this.s.sessions.set(sessionId, session);
    const cancel = () => session.abort(new GenerationError('ERR_CANCELLED', 'the request was cancelled by its client'));
    if (signal?.aborted === true) cancel();
    signal?.addEventListener('abort', cancel, { once: true });
    try {
      const result = await session.run(
        promptTokens,
        maxTokens,
        sampling,
        (token, rec) => {
          const stop = onStep(token, rec, session);
          // A scored prompt's positions are no tokens generated (webswarm_tokens_total, the dashboard's rate), but
          // their votes are votes.
          for (const o of this.s.observers) o.onToken?.(rec.ms, rec.votes, rec.forced === true);
          return stop;
        },
        sampledBefore,
        forced,
        scoreRows,
        chunk,
      );
      return { result, route: session.route.map((ids) => [...ids]), session };
    } finally {
      signal?.removeEventListener('abort', cancel);
      this.s.sessions.delete(sessionId);
      this.sessionLinks.delete(sessionId);
      this.s.fallback?.release(sessionId);
      this.s.sessionClients.delete(sessionId);
      for (const [a, b] of linked) this.s.links.unlink(a, b);
      this.meshRollBacks += session.meshRollBacks;
      this.inputsAhead += session.inputsAhead;
      this.s.finished.set(sessionId, session);
      if (this.s.finished.size > 64) this.s.finished.delete(this.s.finished.keys().next().value as number);
      this.h.spotCheck(session.route.flat());
    }
  }

  /**
   * A route of volunteers to hand a running session's stages that the server computes back to (hand-back.ts), or
   * null: none such, one the server took because its volunteers failed the vote (keptByServer: handed back, they
   * would have it again), FALLBACK=whole (the operator's choice to have the server compute all of a request), a
   * re-partition under way or done since the session began (its replay comes), the request cancelled or the
   * server closing, or no route of volunteers by the rules of a new one.
   */
  private handBackTo(session: GenerationSession, epoch: number, signal: AbortSignal | undefined): string[][] | null {
    const served = servedStages(session.route);
    if (this.s.fallback?.mode !== 'stage' || served.length === 0 || served.some((s) => session.keptByServer.has(s))) return null;
    if (this.s.closing || signal?.aborted === true || this.s.epoch !== epoch || this.h.repartitioning()) return null;
    return this.h.handBackRoute(session.route);
  }

  /** Links a replica joining `stage` of a session to its neighbours: the stages beside it, and the other end of the mesh loop. */
  private linkNeighbours(
    session: GenerationSession,
    stage: number,
    id: string,
    link: (a: string, b: string) => void,
    meshLoop: boolean,
  ): void {
    const route = session.route;
    const last = route.length - 1;
    for (const p of route[stage - 1] ?? []) link(p, id);
    for (const n of route[stage + 1] ?? []) link(id, n);
    if (!meshLoop) return;
    if (stage === last) for (const f of route[0] ?? []) if (f !== id) link(id, f);
    if (stage === 0 && last > 0) for (const l of route[last] ?? []) if (l !== id) link(l, id);
  }

  /**
   * A replica did not join a session, or its neighbours could not reach it: a strike; MAX_NO_SHOWS strikes
   * among its last NO_SHOW_WINDOW sessions evict it.
   */
  noShow(id: string, sessionId: number, why: NoShow): void {
    const member = this.s.members.get(id);
    if (member === undefined) return;
    // Another server's volunteer: its own server keeps its strikes over every server's sessions, and evicts it; this
    // one judges nothing on its own sessions alone (before, it also counted them in a window of its own and evicted
    // and banned a volunteer whose window over the cluster held far fewer misses). "Full" is judged there too: it saw
    // every session opened on it (each server counts it a publication late, and an honest replica refuses the one
    // too many).
    if (member.remote) {
      this.s.cluster?.noShow(id, sessionId, why);
      return;
    }
    let full = '';
    if (why === 'full') {
      const judged = member.opened?.verdict(sessionId);
      if (judged?.honest === true) return;
      full = judged === undefined ? ' (refused it as full)' : ` (refused it as full, holding ${judged.held} sessions)`;
    }
    // One strike a session, however many ways it missed it.
    if (!member.noShows.miss(sessionId)) return;
    // Counted by the server the volunteer is connected to (another's strikes reach it through the cluster).
    for (const o of this.s.observers) o.onNoShow?.(why);
    const what =
      why === 'unreached'
        ? `was not reached by a majority of a neighbouring stage in session ${sessionId}`
        : why === 'silent'
          ? `joined session ${sessionId} and then sent too few results while its stage decided steps`
          : `did not join session ${sessionId}${full}`;
    // With those its client's tabs that left beside it missed (record-memory.ts): closing a tab two strikes short of
    // eviction and opening another no longer starts a clean count.
    const count = this.s.records.missedBy(member.keys, member.noShows);
    this.s.log(`volunteer ${id} ${what} (${count} of ${MAX_NO_SHOWS} no-shows in its last ${NO_SHOW_WINDOW} sessions)`);
    // Told both causes: a volunteer whose browser cannot make WebRTC connections (a firewall, no TURN) is the second.
    if (count >= MAX_NO_SHOWS)
      this.h.expel(
        id,
        'ERR_EVICTED',
        `${count} of its last ${NO_SHOW_WINDOW} sessions not joined, joined without a majority of a neighbouring stage reaching this volunteer over WebRTC (check that this browser can make WebRTC connections), or joined without sending results; last: ${what}`,
        true,
      );
  }

  /**
   * A replica of a running session left (or, `why`, is taken out: it sent too few results): a ready volunteer of
   * the same stage that is not in the route takes its place (rebuilding its KV cache from the agreed inputs);
   * with none, the step goes on with the replicas that remain.
   */
  failOver(session: GenerationSession, left: string, why = 'left'): void {
    const stage = session.stageOf(left);
    if (stage === undefined) return;
    const staying = this.staying(session, stage, left);
    if (this.placeSpare(session, stage, left, staying, why)) return;
    // Too few left for a majority: the server computes the stage, where the operator allows it.
    if (
      staying.length < majority(this.s.options.redundancy) &&
      session.serve(stage, `replica ${left} ${why} and no spare is ready`, why === 'left')
    )
      return;
    session.onLeft(left);
    this.s.log(
      `session ${session.sessionId}: replica ${left} of stage ${stage} ${why}; no spare, going on with ${staying.length} replicas`,
    );
  }

  /** A replica that left a running session when no spare was ready: a spare ready since takes its place now. */
  refill(session: GenerationSession, left: string): void {
    const stage = session.stageOf(left);
    if (stage !== undefined) this.placeSpare(session, stage, left, this.staying(session, stage, left), 'left earlier');
  }

  /**
   * The replicas of `stage` that stay beside `left`: not those that left before (the session went on without
   * them), nor members taken out as silent with no spare (still connected, and sending nothing).
   */
  private staying(session: GenerationSession, stage: number, left: string): string[] {
    return (session.route[stage] ?? []).filter((id) => id !== left && !session.hasLeft(id) && (this.s.members.has(id) || isServerPeer(id)));
  }

  /** Puts a ready spare in `left`'s place, linked to its neighbours; false where none is ready. */
  private placeSpare(session: GenerationSession, stage: number, left: string, staying: readonly string[], why: string): boolean {
    const spare = this.h.spares(stage, session.notCandidates(), staying)[0];
    if (spare === undefined) return false;
    const link = this.sessionLinks.get(session.sessionId);
    if (link !== undefined) this.linkNeighbours(session, stage, spare, link, session.meshLoop);
    session.replace(left, spare);
    this.s.log(`session ${session.sessionId}: replica ${left} of stage ${stage} ${why}; ${spare} takes its place`);
    return true;
  }
}

/**
 * Throws ERR_BAD_REQUEST (param `field`, `prompt` unless named) for a prompt of no tokens or with an id the model does not have: a
 * requester may send token ids, and an id past the embedding would fail every honest replica's stage 0.
 */
export function checkPromptIds(ids: readonly number[], vocabSize: number, field = 'prompt'): void {
  if (ids.length === 0) throw new GenerationError('ERR_BAD_REQUEST', `the ${field} has no tokens`, field);
  const at = ids.findIndex((id) => !Number.isSafeInteger(id) || id < 0 || id >= vocabSize);
  if (at >= 0)
    throw new GenerationError(
      'ERR_BAD_REQUEST',
      `${field}: token ${ids[at]} (at position ${at}) is not in the model's vocabulary of ${vocabSize}`,
      field,
    );
}

/** Throws ERR_BAD_REQUEST for sampling settings out of range or a logit_bias token the model does not have. */
export function checkSampling(sampling: SamplingParams, vocabSize: number): void {
  const bad = samplingError(sampling) ?? biasBeyond(sampling, vocabSize);
  if (bad !== null) throw new GenerationError('ERR_BAD_REQUEST', bad.message, bad.param);
}

/** A logit_bias entry naming a token the model does not have, or null. */
function biasBeyond(sampling: SamplingParams, vocabSize: number): SamplingProblem | null {
  const id = sampling.logitBias?.find(([t]) => t >= vocabSize)?.[0];
  return id === undefined
    ? null
    : { param: 'logit_bias', message: `logit_bias: token ${id} is not in the model's vocabulary of ${vocabSize}` };
}
