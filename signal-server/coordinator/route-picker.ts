import { serverPeerId } from '../../shared/protocol/messages.js';
import { GenerationError } from './generation.js';
import { servedStages } from './hand-back.js';
import { sessionLimitOf } from './registry.js';
import { reputation } from './reputation.js';
import { type Candidate, chooseReplicas, chooseRoute } from './route.js';
import { distinctClients } from './scheduler.js';
import type { RouteWait } from './session-runner.js';
import { established, type SwarmState } from './swarm-state.js';

export const DEFAULT_MAX_QUEUED = 64;
/** How often a waiting request looks for a route again. */
const ROUTE_POLL_MS = 50;

/**
 * Route choice: r ready replicas per stage with room for another session
 * (or the server's own, where the fallback is allowed), spares for a running
 * session, and admission of waiting requests.
 */
export class RoutePicker {
  private queued = 0;

  constructor(private readonly s: SwarmState) {}

  /** Requests waiting for a route now. */
  get waiting(): number {
    return this.queued;
  }

  /** Sessions each volunteer is in now (in a cluster, on every server: a replica holds sessionLimitOf(v), at most MAX_SESSIONS_PER_REPLICA). */
  private load(): Map<string, number> {
    const n = this.sessionsHere();
    const cluster = this.s.cluster;
    if (cluster === null) return n;
    for (const v of this.s.registry.all()) {
      const all = cluster.sessionsOf(v.id, n.get(v.id) ?? 0);
      if (all > 0) n.set(v.id, all);
    }
    return n;
  }

  /** Sessions each volunteer is in on this server now (a cluster publishes its own volunteers'). */
  sessionsHere(): Map<string, number> {
    const n = new Map<string, number>();
    for (const session of this.s.sessions.values()) for (const id of session.route.flat()) n.set(id, (n.get(id) ?? 0) + 1);
    return n;
  }

  /** Ready replicas of a stage with room for another session, as route candidates. */
  private candidates(stage: number, exclude: ReadonlySet<string> = new Set(), load = this.load()): Candidate[] {
    return this.s.registry
      .readyReplicas(stage)
      .filter((v) => !exclude.has(v.id) && (load.get(v.id) ?? 0) < sessionLimitOf(v) && (this.s.cluster?.reachable(v.id) ?? true))
      .map((v) => this.candidate(v.id));
  }

  candidate(id: string): Candidate {
    const member = this.s.members.get(id);
    return {
      id,
      keys: member?.keys ?? [],
      established: established(this.s, id),
      weight: reputation(this.s.audit.get(id)) / (1 + (member?.noShows.count ?? 0)),
    };
  }

  /**
   * Ready replicas of `stage` from distinct clients (no identity key shared), busy or not: a route takes one a
   * client, so with fewer than r of them it cannot have the stage. Counted greedily in the candidates' order (no
   * more than the largest such set); the landing page's "answers now" needs it (a stranger's pass: two ready tabs of one client were "2 of the 2 a route needs", every request 503).
   */
  routable(stage: number): number {
    const taken = new Set<string>();
    let n = 0;
    for (const c of this.candidates(stage, new Set(), new Map())) {
      if (c.keys.some((k) => taken.has(k))) continue;
      for (const k of c.keys) taken.add(k);
      n += 1;
    }
    return n;
  }

  /**
   * Whether `stage` will field r distinct clients once the volunteers given it that proved a stage before (vouched)
   * and load or prove it now, within their load deadline, are ready: beside its ready replicas, as after a switch to
   * a new partition, where every volunteer proves its new stage again. A stranger that never proved a stage does not
   * count (it may never load), nor does one past its load deadline (stale).
   */
  private readying(stage: number): boolean {
    const loading = this.s.registry
      .all()
      .filter(
        (v) => v.stage === stage && !v.ready && v.stale !== true && v.elsewhere !== true && this.s.members.get(v.id)?.vouched === true,
      )
      .map((v) => v.id);
    if (loading.length === 0) return false;
    const ready = this.candidates(stage, new Set(), new Map()).map((c) => c.id);
    return distinctClients([...ready, ...loading], (id) => this.s.members.get(id)?.keys ?? []) >= this.s.options.redundancy;
  }

  /** Spares for a stage of a running session, chosen by the route rules next to the replicas that stay. */
  spares(stage: number, exclude: ReadonlySet<string>, alongside: readonly string[]): string[] {
    const beside = alongside.map((id) => this.candidate(id));
    return chooseReplicas(this.candidates(stage, exclude), this.s.options.redundancy, this.s.random, beside).map((c) => c.id);
  }

  /**
   * A route of volunteers for a running session whose `route` has stages the server computes (the fallback), to
   * hand them back to (hand-back.ts): chosen as any new route is (chooseRoute over the ready replicas with room
   * for another session, one a client, newcomers within their seats), the session's own replicas counted free (it
   * ends as the new one begins). Null while a stage the server computes fields fewer than r distinct clients
   * (looked at first, drawing nothing from the seeded random source), or any stage cannot field r with room.
   */
  handBackRoute(route: readonly (readonly string[])[]): string[][] | null {
    const r = this.s.options.redundancy;
    const served = servedStages(route);
    if (served.length === 0 || served.some((s) => this.routable(s) < r)) return null;
    const load = this.load();
    for (const id of route.flat()) {
      const n = load.get(id);
      if (n !== undefined) load.set(id, n - 1);
    }
    const choice = chooseRoute(
      Array.from({ length: this.s.model.numStages }, (_, s) => this.candidates(s, new Set(), load)),
      r,
      this.s.random,
    );
    return choice.ok ? choice.route : null;
  }

  /** The server replica of `stage` for a session, where the fallback is allowed and has room for it; null otherwise. */
  serverReplica(sessionId: number, stage: number): string | null {
    if (this.s.fallback === null || !this.s.fallback.admit(sessionId, this.s.sessionClients.get(sessionId), true)) return null;
    return serverPeerId(stage);
  }

  /**
   * With the fallback: a route where the stages short of r ready volunteers
   * (from distinct clients, busy or not) are the server's (FALLBACK=stage), or
   * every stage is (FALLBACK=whole). Null when no stage is short, or another
   * stage's volunteers are busy (the request waits); `share` when the session's
   * fallback has no seat for it now: it waits for one in turn (a request's n
   * choices, a batch's prompts, are served in turns rather than refused);
   * `own` when its client's own sessions compute or wait before it. With
   * `readying` (a replay, for a while: RouteWait.readyingUntil), also null
   * while a short stage's volunteers are proving it again (readying()): the
   * request waits for them rather than leave that stage to the server.
   */
  private fallbackRoute(
    sessionId: number,
    load: Map<string, number>,
    readying = false,
  ): string[][] | { share: string; own: boolean } | null {
    const fallback = this.s.fallback;
    if (fallback === null) return null;
    const r = this.s.options.redundancy;
    const stages = Array.from({ length: this.s.model.numStages }, (_, s) => s);
    const short = stages.filter((s) => chooseReplicas(this.candidates(s, new Set(), new Map()), r, this.s.random).length < r);
    if (short.length === 0) return null;
    if (readying && short.some((s) => this.readying(s))) return null;
    const route: string[][] = [];
    for (const s of stages) {
      if (fallback.mode === 'whole' || short.includes(s)) route.push([serverPeerId(s)]);
      else {
        const chosen = chooseReplicas(this.candidates(s, new Set(), load), r, this.s.random);
        if (chosen.length < r) return null;
        route.push(chosen.map((c) => c.id));
      }
    }
    const client = this.s.sessionClients.get(sessionId);
    if (fallback.admit(sessionId, client)) return route;
    const held = client === undefined ? 0 : fallback.heldBy(client);
    // No seat now: the session waits for one in turn (the client holding the fewest first), until the route wait
    // ends, or longer while its client's own sessions compute or wait before it (they will give a seat back).
    // Before, a client that held none was refused at once, so the clients holding seats passed them among themselves
    // for as long as they kept asking (a red-team pass: two keys kept all four, everyone else refused every time).
    fallback.wait(sessionId, client);
    return {
      own: held > 0 || fallback.waitingBefore(sessionId, client),
      share: `stage ${short[0]} of ${this.s.model.modelId} is short of volunteers, and the server's fallback computes ${fallback.busy} sessions already (at most ${fallback.options.maxSessions}, ${fallback.perClient} for one client; this client's requests hold ${held}; ${fallback.waiting} waiting for a seat)`,
    };
  }

  /**
   * r ready replicas per stage with room for another session, chosen by the
   * route rules, or the server's replicas for stages short of volunteers (the
   * fallback); waits until `wait.until`. Beyond maxQueued waiting requests,
   * refuses at once (ERR_BUSY).
   */
  async pickRoute(sessionId: number, signal: AbortSignal | undefined, wait: RouteWait): Promise<string[][]> {
    const r = this.s.options.redundancy;
    if (this.queued >= (this.s.options.maxQueued ?? DEFAULT_MAX_QUEUED))
      throw new GenerationError(
        'ERR_BUSY',
        `${this.queued} request${this.queued === 1 ? ' is' : 's are'} waiting for the swarm already; try again shortly`,
      );
    this.queued += 1;
    try {
      for (;;) {
        if (signal?.aborted === true) throw new GenerationError('ERR_CANCELLED', 'the request was cancelled by its client');
        if (this.s.closing) throw new GenerationError('ERR_SHUTTING_DOWN', 'the server is shutting down');
        const load = this.load();
        const choice = chooseRoute(
          Array.from({ length: this.s.model.numStages }, (_, s) => this.candidates(s, new Set(), load)),
          r,
          this.s.random,
        );
        if (choice.ok) return choice.route;
        const served = this.fallbackRoute(sessionId, load, wait.readyingUntil !== undefined && Date.now() < wait.readyingUntil);
        if (Array.isArray(served)) return served;
        if (Date.now() >= wait.until) {
          // Waiting on its own client's fallback sessions, which are computing (each bounded by the step timeout) or
          // wait for a seat before it (they will compute):
          // not timed out by the route wait, or a request of n = 3 whose first two outlast it failed with their work
          // thrown away. Bounded: a client has at most API_MAX_CONCURRENT generations.
          if (served !== null && !Array.isArray(served) && served.own) {
            await new Promise((resolve) => setTimeout(resolve, ROUTE_POLL_MS));
            continue;
          }
          if (served !== null) throw new GenerationError('ERR_BUSY', `${served.share} until its route wait ended; waited ${wait.ms} ms`);
          const ready = this.s.registry.readyReplicas(choice.stage).length;
          // Would the stage field r distinct clients if nobody were busy? Then it is full, not short.
          const unloaded = chooseReplicas(this.candidates(choice.stage, new Set(), new Map()), r, this.s.random).length;
          throw new GenerationError(
            unloaded >= r ? 'ERR_BUSY' : 'ERR_NO_ROUTE',
            unloaded >= r
              ? `stage ${choice.stage} of ${this.s.model.modelId}: its ${ready} ready replicas are busy with other sessions; waited ${wait.ms} ms`
              : `stage ${choice.stage} of ${this.s.model.modelId}: ${unloaded} of ${r} replicas ready (from distinct clients; ${ready} ready, ${this.s.registry.replicasPerStage()[choice.stage]} assigned); waited ${wait.ms} ms`,
          );
        }
        await new Promise((resolve) => setTimeout(resolve, ROUTE_POLL_MS));
      }
    } finally {
      this.queued -= 1;
      // Its turn for a seat of the fallback, if it waited for one, ends with its wait (admitted already, or not).
      this.s.fallback?.unwait(sessionId);
    }
  }
}
