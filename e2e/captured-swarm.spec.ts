// A volunteer tab whose stage runs with graph capture (?capture=2: WebGPU on
// SwiftShader here, the fused graphs, rows of the model's whole context) in a
// swarm of WASM tabs, 3 stages × r = 1: its ready says the 2 sessions it
// holds, and the requests it serves, two at once sharing its calls, give the
// reference runner's tokens. The coordinator's side of the session limit (no
// more sessions routed than the ready says) is tested with real-protocol
// clients in signal-server/session-limit.test.ts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ReplicaStatus } from '../web/volunteer/replica.js';
import { type E2eSwarm, startE2eSwarm } from './harness.js';

/** Tabs fill stages 0, 1, 2 in order: the second holds stage 1. */
const CAPTURED = 1;
const SESSIONS = 2;
const PROMPTS = ['Emma Woodhouse, handsome, clever, and rich,', 'It is a truth universally acknowledged, that'];
const TOKENS = 8;

let e: E2eSwarm;
beforeAll(async () => {
  e = await startE2eSwarm({
    volunteers: 3,
    stages: 3,
    redundancy: 1,
    graph: 'fused',
    backendOf: (i) => (i === CAPTURED ? 'webgpu' : 'wasm'),
    captureOf: (i) => (i === CAPTURED ? String(SESSIONS) : null),
  });
}, 300_000);
afterAll(() => e?.close());

async function status(index: number): Promise<ReplicaStatus | undefined> {
  return e.swarm.pages[index]?.evaluate(() => window.webswarmVolunteer);
}

describe('a volunteer with graph capture', () => {
  it("holds its stage with capture, says how many sessions, and serves the reference's tokens, two requests at once", async () => {
    const s = await status(CAPTURED);
    expect(s).toMatchObject({ backend: 'webgpu', stage: 1, capture: { on: true, sessions: SESSIONS } });
    expect(await e.swarm.pages[CAPTURED]?.getByTestId('capture').textContent()).toBe(`graph capture: up to ${SESSIONS} sessions at once`);
    const wasm = await status(0);
    expect(wasm?.capture).toBeNull();

    const expected = await Promise.all(PROMPTS.map((p) => e.expected(p, TOKENS)));
    const got = await Promise.all(PROMPTS.map((prompt) => e.complete({ prompt, max_tokens: TOKENS, temperature: 0 })));
    for (const [i, r] of got.entries()) {
      expect(r.status, JSON.stringify(r.json.error)).toBe(200);
      expect(r.json.webswarm.tokens).toEqual(expected[i]);
      expect(r.json.webswarm.route[1]).toEqual([s?.volunteerId]);
      expect(r.json.webswarm.server_stages).toEqual([]);
    }
    const after = await status(CAPTURED);
    expect(after?.lastError).toBeNull();
    expect(after?.stepsComputed).toBeGreaterThanOrEqual(2 * TOKENS);
  });
});
