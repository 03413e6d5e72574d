// Reading GET /api/swarm into volunteers ready per stage: what npm start's
// progress line and the landing page show; malformed bodies are refused by name
// (parseSwarmListing, shared/protocol/http.test.ts, checks every field).
import { describe, expect, it } from 'vitest';
import type { VolunteerView } from '../protocol/messages.js';
import { parseSwarmReadiness } from './readiness.js';

const volunteer = (stage: number, state: VolunteerView['state']): VolunteerView => ({
  id: `v${stage}${state}`,
  stage,
  backend: 'wasm',
  adapter: null,
  state,
  ready: state !== 'loading',
  agreed: 0,
  disagreed: 0,
  reputation: 0.5,
  established: false,
});

const body = (replicasPerStage: number[], list: VolunteerView[], routablePerStage?: number[]) => ({
  volunteers: list.length,
  replicasPerStage,
  redundancy: 3,
  // Absent: every ready (or busy) volunteer a client of its own.
  routablePerStage: routablePerStage ?? replicasPerStage.map((_, s) => list.filter((v) => v.stage === s && v.state !== 'loading').length),
  list,
  apiKeyRequired: false,
  fallback: 'off' as const,
});

describe('parseSwarmReadiness', () => {
  it('counts ready (and busy) and loading volunteers per stage; the swarm answers once every stage has r ready', () => {
    const list = [volunteer(0, 'ready'), volunteer(0, 'busy'), volunteer(1, 'loading'), volunteer(1, 'ready'), volunteer(2, 'loading')];
    expect(parseSwarmReadiness(body([2, 2, 1], list))).toEqual({
      ok: true,
      value: {
        stages: [
          { ready: 2, loading: 0, routable: 2 },
          { ready: 1, loading: 1, routable: 1 },
          { ready: 0, loading: 1, routable: 0 },
        ],
        volunteers: 5,
        ready: 3,
        redundancy: 3,
        canAnswer: false,
        fallback: 'off',
      },
    });
    list[4] = volunteer(2, 'ready');
    // One ready in every stage is not a route at r = 3 (before, canAnswer was true here).
    expect(parseSwarmReadiness(body([2, 2, 1], list))).toMatchObject({ ok: true, value: { ready: 4, canAnswer: false } });
    const full = [0, 1, 2].flatMap((stage) =>
      ['ready', 'busy', 'ready'].map((st, i) => ({ ...volunteer(stage, st as 'ready'), id: `v${stage}-${i}` })),
    );
    expect(parseSwarmReadiness(body([3, 3, 3], full))).toMatchObject({ ok: true, value: { ready: 9, canAnswer: true } });
    // Three ready in every stage, but stage 1's of two clients: no route yet (a stranger's pass: "answers now", then 503s).
    expect(parseSwarmReadiness(body([3, 3, 3], full, [3, 2, 3]))).toMatchObject({ ok: true, value: { ready: 9, canAnswer: false } });
  });

  it('an empty swarm, and a server with no model, cannot answer', () => {
    expect(parseSwarmReadiness(body([0, 0], []))).toMatchObject({ ok: true, value: { ready: 0, canAnswer: false } });
    expect(parseSwarmReadiness(body([], []))).toMatchObject({ ok: true, value: { stages: [], canAnswer: false } });
  });

  it('refuses a body that is not the listing, naming the field', () => {
    const reason = (raw: unknown) => {
      const r = parseSwarmReadiness(raw);
      return r.ok ? 'accepted' : r.reason;
    };
    expect(reason(null)).toBe('/api/swarm: the body must be an object');
    expect(reason(body([1], [volunteer(1, 'ready')]))).toBe('/api/swarm: list[0].stage must be a stage index below 1');
    expect(reason({ ...body([1], []), list: {} })).toBe('/api/swarm: list must be an array');
  });
});
