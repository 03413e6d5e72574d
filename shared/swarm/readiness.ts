/**
 * How far a swarm is from answering, from `GET /api/swarm`: per stage, the
 * volunteers ready (or busy computing) and those still loading their stage.
 * `npm start`'s progress line and the landing page both read it.
 */
import { parseSwarmListing, type SwarmListing } from '../protocol/http.js';
import type { Parsed } from '../protocol/validate.js';

export interface StageReadiness {
  /** Ready for a session or computing one. */
  readonly ready: number;
  /** Assigned, still downloading or loading their stage. */
  readonly loading: number;
  /** Of the ready, those of distinct clients (one client's tabs count once): a route needs r of them. */
  readonly routable: number;
}

export interface SwarmReadiness {
  /** One entry per pipeline stage of the served model (none when no model is served). */
  readonly stages: readonly StageReadiness[];
  readonly volunteers: number;
  readonly ready: number;
  /** REDUNDANCY: the ready replicas (of distinct clients) a route needs in every stage. */
  readonly redundancy: number;
  /**
   * Every stage has `redundancy` ready volunteers of distinct clients: a request can get a route of
   * volunteers now. One is not enough at r > 1: a route needs r per stage, and
   * a stage short of them waits, fails or is the server's (FALLBACK).
   */
  readonly canAnswer: boolean;
  /** FALLBACK: where a stage is short, whether the server computes it meanwhile (`stage`, `whole`) or nobody does (`off`). */
  readonly fallback: 'off' | 'stage' | 'whole';
}

/** Volunteers ready (or busy) and loading per stage of a listing; the swarm answers once every stage has r ready. */
export function swarmReadiness(listing: SwarmListing): SwarmReadiness {
  const stages = listing.replicasPerStage.map((_, i) => ({ ready: 0, loading: 0, routable: listing.routablePerStage[i] ?? 0 }));
  for (const v of listing.list) {
    const stage = stages[v.stage];
    if (stage === undefined) continue; // parseSwarmListing refuses such a listing
    if (v.state === 'loading') stage.loading++;
    else stage.ready++;
  }
  const ready = stages.reduce((n, s) => n + s.ready, 0);
  const r = listing.redundancy;
  return {
    stages,
    volunteers: listing.list.length,
    ready,
    redundancy: r,
    canAnswer: stages.length > 0 && stages.every((s) => s.routable >= r),
    fallback: listing.fallback,
  };
}

/** Reads `GET /api/swarm`'s body (parseSwarmListing) into readiness. */
export function parseSwarmReadiness(raw: unknown): Parsed<SwarmReadiness> {
  const listing = parseSwarmListing(raw);
  return listing.ok ? { ok: true, value: swarmReadiness(listing.value) } : listing;
}
