import type { TimerHandle } from '../../shared/clock.js';
import { GenerationError, RefusedAsFull } from './generation-error.js';
import { MeshLoopChecks } from './mesh-checks.js';
import type { NoShow } from './session-types.js';
import { UnreachedReports } from './unreached-reports.js';

/** After every stage has a majority joined, how much longer the others are waited for before spares take their places. */
export const JOIN_GRACE_MS = 2_000;
/** Rounds of replacing replicas that did not join. */
const JOIN_ROUNDS = 3;

/** Opening a session on its replicas and waiting for them to join; aborting it; waiting with a timeout. */
export abstract class SessionJoin extends MeshLoopChecks {
  private aborted: GenerationError | null = null;
  private onAbort: ((e: GenerationError) => void) | null = null;

  private readonly unreached = new UnreachedReports();
  /** When the route's replicas were opened (join). */
  private joinBegan = 0;
  /** Replicas whose `session:joined` went free (admitFreeJoin). */
  private readonly freeJoins = new Set<string>();

  /**
   * Whether this `session:joined` of `volunteer` is owed, work the server asked for (server.ts does not count it
   * against the socket's event budget, as owed step reports): it is a replica of this session that has not joined
   * it, and no join of it went free before. Once a session, counted here before the event is parsed: a join that
   * then fails to parse records nothing, and before, a replica that never joined sent malformed joins of 900 KB free
   * of both budgets for as long as the session ran (826 MB in 8 s from one socket).
   */
  admitFreeJoin(volunteer: string): boolean {
    if (!this.members.has(volunteer) || this.joined.has(volunteer) || this.freeJoins.has(volunteer)) return false;
    this.freeJoins.add(volunteer);
    return true;
  }

  /**
   * What `volunteer` would be if it went now, unjoined: a no-show (`absent`, or `full` where it refused the session as
   * full), where the session waits for it to join (a replica of the route opened before the first step, while
   * SessionJoin waits, or a newcomer brought in since: NewcomerJoins), or it refused the session before its start and
   * the join round has not judged it yet (a refusal, then a departure before the others joined, went unjudged); null
   * otherwise.
   */
  unjoinedAs(volunteer: string): NoShow | null {
    // Moved out already (judged then: onLeft), or gone.
    if (!this.members.has(volunteer) || this.departed.has(volunteer)) return null;
    // A newcomer counts as joined in the route from the start (SessionRoute.swap); its own join is awaited apart.
    if (this.awaitedJoins.has(volunteer)) return 'absent';
    if (this.joinChanged === null || this.joined.has(volunteer)) return null;
    return this.refusalAs(volunteer);
  }

  /** What a replica of the route that did not join is, judged: refused as full (`full`, which its own server judges), or `absent`. */
  private refusalAs(volunteer: string): NoShow {
    return this.refusedFull.has(volunteer) ? 'full' : 'absent';
  }

  /**
   * A replica left, or was moved out by the server, with no spare to take its place. One moved before the start that
   * refused the session, or had held it up JOIN_GRACE_MS or more unjoined, is a no-show now (the join round skips those
   * that went; one that left is judged as it leaves, Roster.left, and the strike here finds no member). Before, an
   * accomplice's departure could have a replica that never joined moved out, unjudged (a red-team find); sooner than
   * the grace, an honest replica moved while it linked is not struck.
   */
  override onLeft(volunteer: string): void {
    if (this.joinChanged !== null && this.members.has(volunteer) && !this.joined.has(volunteer) && !this.departed.has(volunteer)) {
      if (this.refused.has(volunteer)) this.retry?.noShow?.(volunteer, this.refusalAs(volunteer));
      else if (this.clock.now() - this.joinBegan >= JOIN_GRACE_MS) this.retry?.noShow?.(volunteer, 'absent');
    }
    super.onLeft(volunteer);
  }

  /** `volunteer` joined, without data channels to the neighbours in `unreached` (see UnreachedReports). */
  onJoined(volunteer: string, unreached: readonly string[] = []): void {
    const stage = this.members.get(volunteer);
    if (stage === undefined) return;
    // A newcomer of the running session: judged for silence from now (the route's first from the first step).
    // Only once: a member saying it joined again must not start its watch again.
    if (this.awaitedJoins.has(volunteer)) this.silence.watch(volunteer, this.currentStep, this.retry?.silenceBefore?.(volunteer));
    this.awaitedJoins.joined(volunteer);
    this.joined.add(volunteer);
    for (const target of unreached) {
      const at = this.members.get(target);
      if (at === undefined) continue;
      const count = this.unreached.report(volunteer, stage, target, at, this.current[stage] ?? [], this.needed);
      if (count === null) continue;
      this.retry?.log?.(`session ${this.sessionId}: ${target} of stage ${at} was unreachable for ${count} replicas of stage ${stage}`);
      this.retry?.noShow?.(target, 'unreached');
    }
    this.joinChanged?.();
  }

  /**
   * Opens the session on every replica and waits until all have joined, or
   * until every stage has a majority joined and JOIN_GRACE_MS more have
   * passed, or joinMs. Replicas that did not join (or refused) are no-shows:
   * spares take their places, in up to JOIN_ROUNDS rounds. Fails only when a
   * stage cannot reach a majority of r joined.
   */
  protected async join(): Promise<void> {
    const t0 = this.clock.now();
    this.joinBegan = t0;
    for (const [stage, ids] of this.route.entries()) {
      ids.forEach((id, replica) => {
        this.transport.open(id, {
          sessionId: this.sessionId,
          stage,
          replica,
          prev: this.route[stage - 1] ?? [],
          next: this.route[stage + 1] ?? [],
          replayTo: 0,
          steps: this.maxSteps,
          ...this.loopOf(stage),
          ...this.fanoutOf(stage),
          ...this.rowsOf(stage),
        });
      });
    }
    const tried = new Set(this.members.keys());
    for (let round = 0; ; round++) {
      await this.joinRound();
      for (const id of this.joined) if (this.members.has(id)) this.retry?.showed?.(id);
      const missing = [...this.members.keys()].filter((id) => !this.joined.has(id));
      this.retry?.log?.(
        `session ${this.sessionId}: ${this.members.size - missing.length} of ${this.members.size} replicas joined in ${Math.round(this.clock.now() - t0)} ms`,
      );
      if (missing.length === 0) return;
      // Not one that went (left, or moved by the server, with no spare to take its place): a departure is judged as
      // it happens (Roster.left), and a move is the server's doing. Before, a volunteer moved out of a session that
      // waited for it with no spare was struck as if it had not joined.
      const judge = (id: string) => {
        if (!this.departed.has(id)) this.retry?.noShow?.(id, this.refusalAs(id));
      };
      if (round + 1 >= JOIN_ROUNDS) {
        // The last round's missing are no-shows too (no spare is tried after them).
        for (const id of missing) judge(id);
        break;
      }
      let replaced = 0;
      for (const id of missing) {
        const stage = this.members.get(id) as number;
        judge(id);
        const staying = (this.current[stage] as string[]).filter((x) => x !== id && this.joined.has(x));
        const spare = this.retry?.spares(stage, new Set([...tried, ...this.notCandidates()]), staying)[0];
        if (spare === undefined) continue;
        tried.add(spare);
        this.retry?.link(stage, spare);
        if (this.swap(id, spare, false) === undefined) continue;
        this.closeOn(id);
        this.announce(stage, [spare]);
        this.retry?.log?.(`session ${this.sessionId}: ${id} of stage ${stage} did not join; ${spare} takes its place`);
        replaced += 1;
      }
      if (replaced === 0) break;
    }
    // A stage still short of a majority joined: the server computes it, where the operator allows.
    for (const [stage, n] of this.joinedPerStage().entries())
      if (n < this.neededAt(stage)) this.serve(stage, `stage ${stage}: only ${n} of ${this.policy.redundancy} replicas joined`);
    const short = this.joinedPerStage().findIndex((n, stage) => n < this.neededAt(stage));
    if (short >= 0) {
      const missing = (this.current[short] as string[]).filter((id) => !this.joined.has(id));
      const message = `stage ${short}: only ${this.joinedPerStage()[short]} of ${this.policy.redundancy} replicas joined within ${this.timeouts.joinMs} ms (${this.neededAt(short)} needed; ${missing.join(', ')} did not)`;
      throw missing.every((id) => this.refusedFull.has(id)) ? new RefusedAsFull(message) : new GenerationError('ERR_NO_ROUTE', message);
    }
  }

  /** One round of waiting for replicas to join (see join). */
  private joinRound(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let grace: TimerHandle | null = null;
      const done = () => {
        this.clock.clearTimeout(timer);
        if (grace !== null) this.clock.clearTimeout(grace);
        this.joinChanged = null;
        this.onAbort = null;
        resolve();
      };
      const check = () => {
        const waiting = [...this.members.keys()].filter((id) => !this.joined.has(id) && !this.refused.has(id));
        if (waiting.length === 0) return done();
        if (grace === null && this.joinedPerStage().every((n, stage) => n >= this.neededAt(stage)))
          grace = this.clock.setTimeout(done, JOIN_GRACE_MS);
      };
      const timer = this.clock.setTimeout(done, this.timeouts.joinMs);
      this.joinChanged = check;
      if (this.aborted !== null) {
        this.clock.clearTimeout(timer);
        reject(this.aborted);
        return;
      }
      this.onAbort = (e) => {
        this.clock.clearTimeout(timer);
        if (grace !== null) this.clock.clearTimeout(grace);
        this.joinChanged = null;
        reject(e);
      };
      check();
    });
  }

  /** Ends the generation with `e` at once (the server is shutting down). */
  abort(e: GenerationError): void {
    this.aborted ??= e;
    this.onAbort?.(e);
  }

  protected within(p: Promise<void>, ms: number, onTimeout: () => GenerationError): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (this.aborted !== null) {
        reject(this.aborted);
        return;
      }
      const timer = this.clock.setTimeout(() => reject(onTimeout()), ms);
      this.onAbort = (e) => {
        this.clock.clearTimeout(timer);
        reject(e);
      };
      p.then(
        () => {
          this.clock.clearTimeout(timer);
          resolve();
        },
        (e: unknown) => {
          this.clock.clearTimeout(timer);
          reject(e);
        },
      );
    });
  }
}
