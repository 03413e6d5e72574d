// The status routes' bodies as the pages read them: a listing is accepted
// whole, and anything else is refused naming the field.
import { describe, expect, it } from 'vitest';
import { parseModelListings, parseServiceStatus, parseSwarmListing } from './http.js';
import type { VolunteerView } from './messages.js';

const volunteer = (over: Partial<Record<keyof VolunteerView, unknown>> = {}) => ({
  id: 'v0',
  stage: 0,
  backend: 'wasm',
  adapter: null,
  state: 'ready',
  ready: true,
  agreed: 3,
  disagreed: 0,
  reputation: 0.75,
  established: false,
  ...over,
});

const listing = (over: Record<string, unknown> = {}) => ({
  volunteers: 1,
  replicasPerStage: [1, 0],
  redundancy: 3,
  routablePerStage: [1, 0],
  list: [volunteer()],
  apiKeyRequired: false,
  fallback: 'stage',
  ...over,
});

describe('parseSwarmListing', () => {
  it('accepts a listing, and the one of a server that serves no model', () => {
    expect(parseSwarmListing(listing())).toEqual({ ok: true, value: listing() });
    const gpu = volunteer({ id: 'g', stage: 1, backend: 'webgpu', adapter: 'swiftshader', state: 'busy', established: true });
    expect(parseSwarmListing(listing({ volunteers: 2, list: [volunteer(), gpu] }))).toMatchObject({ ok: true, value: { list: [{}, gpu] } });
    const none = {
      volunteers: 0,
      replicasPerStage: [],
      redundancy: 0,
      routablePerStage: [],
      list: [],
      apiKeyRequired: true,
      fallback: 'off',
    };
    expect(parseSwarmListing(none)).toEqual({ ok: true, value: none });
  });

  it('drops fields it does not know', () => {
    const parsed = parseSwarmListing(listing({ extra: 1, list: [{ ...volunteer(), secret: 'x' }] }));
    expect(parsed).toEqual({ ok: true, value: listing() });
  });

  it.each<[unknown, string]>([
    [null, '/api/swarm: the body must be an object'],
    [[], '/api/swarm: the body must be an object'],
    [listing({ volunteers: -1 }), '/api/swarm: volunteers must be a count'],
    [listing({ replicasPerStage: 3 }), '/api/swarm: replicasPerStage must be an array of counts'],
    [listing({ replicasPerStage: [1, 'two'] }), '/api/swarm: replicasPerStage must be an array of counts'],
    [listing({ redundancy: 1.5 }), '/api/swarm: redundancy must be a count'],
    [listing({ apiKeyRequired: 'no' }), '/api/swarm: apiKeyRequired must be a boolean'],
    [listing({ fallback: 'sometimes' }), '/api/swarm: fallback must be off, stage or whole'],
    [listing({ fallback: undefined }), '/api/swarm: fallback must be off, stage or whole'],
    [listing({ list: {} }), '/api/swarm: list must be an array'],
    [listing({ list: [7] }), '/api/swarm: list[0] must be an object'],
    [listing({ list: [volunteer({ id: '' })] }), '/api/swarm: list[0].id must be a non-empty string'],
    [listing({ list: [volunteer(), volunteer({ stage: 2 })] }), '/api/swarm: list[1].stage must be a stage index below 2'],
    [listing({ list: [volunteer({ stage: 0.5 })] }), '/api/swarm: list[0].stage must be a stage index below 2'],
    [listing({ list: [volunteer({ backend: 'tpu' })] }), '/api/swarm: list[0].backend must be wasm or webgpu'],
    [listing({ list: [volunteer({ adapter: 3 })] }), '/api/swarm: list[0].adapter must be null or a string'],
    [listing({ list: [volunteer({ state: 'asleep' })] }), '/api/swarm: list[0].state must be loading, ready or busy'],
    [listing({ list: [volunteer({ ready: 1 })] }), '/api/swarm: list[0].ready must be a boolean'],
    [listing({ list: [volunteer({ agreed: -1 })] }), '/api/swarm: list[0].agreed must be a count'],
    [listing({ list: [volunteer({ disagreed: '0' })] }), '/api/swarm: list[0].disagreed must be a count'],
    [listing({ list: [volunteer({ reputation: Number.NaN })] }), '/api/swarm: list[0].reputation must be a number'],
    [listing({ list: [volunteer({ established: null })] }), '/api/swarm: list[0].established must be a boolean'],
  ])('refuses %j: %s', (raw, reason) => {
    expect(parseSwarmListing(raw)).toEqual({ ok: false, reason });
  });
});

describe('parseModelListings', () => {
  const model = { modelId: 'austen-2m', stages: 3, baseUrl: '/models/austen-2m/3-stages', stageBytes: [1_500_000, 1_000_000, 1_500_000] };

  it('accepts the served models, or none', () => {
    expect(parseModelListings([model, { ...model, modelId: 'tiny', extra: true }])).toEqual({
      ok: true,
      value: [model, { ...model, modelId: 'tiny' }],
    });
    expect(parseModelListings([])).toEqual({ ok: true, value: [] });
  });

  it.each<[unknown, string]>([
    [{ models: [] }, '/api/models: the body must be an array'],
    [[model, 'x'], '/api/models: [1] must be an object'],
    [[{ ...model, modelId: 7 }], '/api/models: [0].modelId must be a non-empty string'],
    [[{ ...model, stages: 0 }], '/api/models: [0].stages must be an integer ≥ 1'],
    [[{ ...model, baseUrl: '' }], '/api/models: [0].baseUrl must be a non-empty string'],
    [[{ ...model, stageBytes: [1, 2] }], '/api/models: [0].stageBytes must list 3 byte counts, one a stage'],
    [[{ ...model, stageBytes: [1, -2, 3] }], '/api/models: [0].stageBytes must list 3 byte counts, one a stage'],
    [[{ ...model, stageBytes: null }], '/api/models: [0].stageBytes must list 3 byte counts, one a stage'],
  ])('refuses %j: %s', (raw, reason) => {
    expect(parseModelListings(raw)).toEqual({ ok: false, reason });
  });
});

describe('parseServiceStatus', () => {
  const status = (over: Record<string, unknown> = {}) => ({
    modelId: 'm',
    redundancy: 3,
    volunteers: 6,
    readyPerStage: [3, 3],
    routablePerStage: [3, 0],
    fallback: { mode: 'stage', maxSessions: 4, sessions: 0 },
    windows: [],
    ...over,
  });

  it('accepts a status whole, and refuses routablePerStage missing, or not one count per stage', () => {
    const parsed = parseServiceStatus(status());
    expect(parsed.ok && parsed.value.routablePerStage).toEqual([3, 0]);
    for (const routablePerStage of [undefined, [3], [3, -1], [3, 'x']])
      expect(parseServiceStatus(status({ routablePerStage }))).toEqual({
        ok: false,
        reason: '/api/status: routablePerStage must be an array of counts, one per stage',
      });
  });
});
