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
}

export interface SwarmReadiness {
  /** One entry per pipeline stage of the served model (none when no model is served). */
  readonly stages: readonly StageReadiness[];
  readonly volunteers: number;
  readonly ready: number;
  /** Every stage has a ready volunteer: a request gets a route now. */
  readonly canAnswer: boolean;
}

/** Volunteers ready (or busy) and loading per stage of a listing; the swarm answers once every stage has one ready. */
export function swarmReadiness(listing: SwarmListing): SwarmReadiness {
  const stages = listing.replicasPerStage.map(() => ({ ready: 0, loading: 0 }));
  for (const v of listing.list) {
    const stage = stages[v.stage];
    if (stage === undefined) continue; // parseSwarmListing refuses such a listing
    if (v.state === 'loading') stage.loading++;
    else stage.ready++;
  }
  const ready = stages.reduce((n, s) => n + s.ready, 0);
  return { stages, volunteers: listing.list.length, ready, canAnswer: stages.length > 0 && stages.every((s) => s.ready > 0) };
}

/** Reads `GET /api/swarm`'s body (parseSwarmListing) into readiness. */
export function parseSwarmReadiness(raw: unknown): Parsed<SwarmReadiness> {
  const listing = parseSwarmListing(raw);
  return listing.ok ? { ok: true, value: swarmReadiness(listing.value) } : listing;
}
