/**
 * How far a swarm is from answering, from `GET /api/swarm`: per stage, the
 * volunteers ready (or busy computing) and those still loading their stage.
 * `npm start`'s progress line and the landing page both read it.
 */
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

/** More volunteers than any listing this code reads (the server allows far fewer per swarm). */
const MAX_LISTED = 100_000;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Reads `GET /api/swarm`'s body: `replicasPerStage` gives the stages, `list` each volunteer's stage and state. */
export function parseSwarmReadiness(raw: unknown): Parsed<SwarmReadiness> {
  if (!isObject(raw)) return { ok: false, reason: '/api/swarm: the body must be an object' };
  const perStage = raw.replicasPerStage;
  if (!Array.isArray(perStage) || perStage.length > MAX_LISTED)
    return { ok: false, reason: '/api/swarm: replicasPerStage must be an array' };
  const list = raw.list;
  if (!Array.isArray(list) || list.length > MAX_LISTED) return { ok: false, reason: '/api/swarm: list must be an array' };
  const stages = perStage.map(() => ({ ready: 0, loading: 0 }));
  for (const [i, v] of list.entries()) {
    if (!isObject(v)) return { ok: false, reason: `/api/swarm: list[${i}] must be an object` };
    const stage = typeof v.stage === 'number' && Number.isInteger(v.stage) ? stages[v.stage] : undefined;
    if (stage === undefined) return { ok: false, reason: `/api/swarm: list[${i}].stage must be a stage index below ${stages.length}` };
    if (v.state === 'ready' || v.state === 'busy') stage.ready++;
    else if (v.state === 'loading') stage.loading++;
    else return { ok: false, reason: `/api/swarm: list[${i}].state must be loading, ready or busy` };
  }
  const ready = stages.reduce((n, s) => n + s.ready, 0);
  return {
    ok: true,
    value: { stages, volunteers: list.length, ready, canAnswer: stages.length > 0 && stages.every((s) => s.ready > 0) },
  };
}
