// GET /api/swarm on a real server with real-protocol Node volunteers: ready
// volunteers of one client (one address) count once towards a route, so the
// landing page does not say "the swarm answers now" while every request would
// wait for a route and fail (a stranger's pass found exactly that).
import { describe, expect, it } from 'vitest';
import { parseSwarmReadiness } from '../shared/swarm/readiness.js';
import { httpSwarm, WAIT_MS } from './testing/http-swarm.js';

const { start, volunteer, readyCount } = httpSwarm('swarm-listing');

const readiness = async (url: string) => {
  const parsed = parseSwarmReadiness(await (await fetch(`${url}/api/swarm`)).json());
  if (!parsed.ok) throw new Error(parsed.reason);
  return parsed.value;
};

describe('GET /api/swarm', () => {
  it('counts ready volunteers of one address once towards a route (routablePerStage), and the swarm answers once r clients are ready', async () => {
    const { url } = await start(1, 2, { fallback: 'off', routeWaitMs: 300 });
    volunteer(url, '127.0.0.90');
    volunteer(url, '127.0.0.90');
    await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(2);
    expect(await readiness(url)).toMatchObject({ stages: [{ ready: 2, routable: 1 }], canAnswer: false });
    volunteer(url, '127.0.0.91');
    await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(3);
    expect(await readiness(url)).toMatchObject({ stages: [{ ready: 3, routable: 2 }], canAnswer: true });
  });
});
