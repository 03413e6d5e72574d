// Reading GET /api/swarm into volunteers ready per stage: what npm start's
// progress line and the landing page show; malformed bodies are refused by name.
import { describe, expect, it } from 'vitest';
import { parseSwarmReadiness } from './readiness.js';

const volunteer = (stage: number, state: string) => ({ id: `v${stage}${state}`, stage, state, ready: state !== 'loading' });

describe('parseSwarmReadiness', () => {
  it('counts ready (and busy) and loading volunteers per stage; the swarm answers once every stage has one ready', () => {
    const body = {
      volunteers: 5,
      replicasPerStage: [2, 2, 1],
      list: [volunteer(0, 'ready'), volunteer(0, 'busy'), volunteer(1, 'loading'), volunteer(1, 'ready'), volunteer(2, 'loading')],
      apiKeyRequired: false,
    };
    const r = parseSwarmReadiness(body);
    expect(r).toEqual({
      ok: true,
      value: {
        stages: [
          { ready: 2, loading: 0 },
          { ready: 1, loading: 1 },
          { ready: 0, loading: 1 },
        ],
        volunteers: 5,
        ready: 3,
        canAnswer: false,
      },
    });
    const [, , , , last] = body.list;
    if (last !== undefined) last.state = 'ready';
    expect(parseSwarmReadiness(body)).toMatchObject({ ok: true, value: { ready: 4, canAnswer: true } });
  });

  it('an empty swarm, and a server with no model, cannot answer', () => {
    expect(parseSwarmReadiness({ replicasPerStage: [0, 0], list: [] })).toMatchObject({ ok: true, value: { ready: 0, canAnswer: false } });
    expect(parseSwarmReadiness({ replicasPerStage: [], list: [] })).toMatchObject({ ok: true, value: { stages: [], canAnswer: false } });
  });

  it('refuses a body that is not the listing, naming the field', () => {
    const reason = (raw: unknown) => {
      const r = parseSwarmReadiness(raw);
      return r.ok ? 'accepted' : r.reason;
    };
    expect(reason(null)).toBe('/api/swarm: the body must be an object');
    expect(reason({ replicasPerStage: 3, list: [] })).toBe('/api/swarm: replicasPerStage must be an array');
    expect(reason({ replicasPerStage: [1], list: {} })).toBe('/api/swarm: list must be an array');
    expect(reason({ replicasPerStage: [1], list: [volunteer(1, 'ready')] })).toBe(
      '/api/swarm: list[0].stage must be a stage index below 1',
    );
    expect(reason({ replicasPerStage: [1], list: [{ stage: 0.5, state: 'ready' }] })).toMatch(/list\[0\]\.stage/);
    expect(reason({ replicasPerStage: [1], list: [volunteer(0, 'asleep')] })).toBe(
      '/api/swarm: list[0].state must be loading, ready or busy',
    );
  });
});
