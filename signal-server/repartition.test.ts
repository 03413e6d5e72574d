// Live re-partition over the real protocol: a real server on port 0, Node
// volunteers that compute with onnxruntime and speak Socket.IO, requests over
// the HTTP API, tokens compared with the reference runner's. Volunteers leave
// during a generation until the partition must change.
import { describe, expect, it } from 'vitest';
import { fetchSwarmListing } from '../testing/swarm-listing.js';
import { httpSwarm, WAIT_MS } from './testing/http-swarm.js';
import type { NodeVolunteer } from './testing/node-volunteer.js';

const { start, volunteer, readyCount, complete, stageCache } = httpSwarm('repartition');

/** The stage of each ready volunteer, as GET /api/swarm lists them. */
async function readyStages(url: string): Promise<number[]> {
  return (await fetchSwarmListing(url)).list.filter((v) => v.ready).map((v) => v.stage);
}

describe('re-partition over Socket.IO', () => {
  it('a volunteer leaves mid-generation and 3 stages × r = 2 cannot be kept: 2 stages, the running request answers the reference, and so do new ones', async () => {
    const { server, url, expected } = await start(3, 2, { stepTimeoutMs: 20_000, repartition: { stageCache: stageCache() } });
    const coordinator = server.coordinator;
    if (coordinator === null) throw new Error('no coordinator');
    const vs: NodeVolunteer[] = Array.from({ length: 6 }, (_, i) => volunteer(url, `127.0.0.${20 + i}`));
    await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(6);
    expect(vs.map((v) => v.partition)).toEqual(vs.map(() => 'r0-1_1-2_2-3'));
    // Stage 1 drops to one of r = 2 after two steps: no majority, no spare, nobody to move (5 < 3 × 2).
    const leaving = vs.find((v) => v.stage === 1) as NodeVolunteer;
    leaving.leaveAfter(2);
    const r = await complete(url);
    expect(r.body.error).toBeUndefined();
    expect(r.status).toBe(200);
    expect(r.body.webswarm?.tokens).toEqual(expected);
    expect(coordinator.repartitions).toBe(1);
    expect(coordinator.replays).toBe(1);
    expect(coordinator.modelInfo.stages).toBe(2);
    // Every volunteer that stayed was assigned a stage of the new partition and passed a challenge on it.
    const stayed = vs.filter((v) => v !== leaving);
    await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(5);
    const partition = stayed[0]?.partition;
    expect(partition).toMatch(/^r0-[12]_[12]-3$/);
    for (const v of stayed) expect(v.partition).toBe(partition);
    for (const s of await readyStages(url)) expect(s).toBeLessThan(2);
    const perStage = [0, 1].map((s) => stayed.filter((v) => v.stage === s).length);
    for (const n of perStage) expect(n).toBeGreaterThanOrEqual(2);
    for (const v of stayed) expect(v.errors).toEqual([]);
    // The new partition serves new requests with the reference's tokens.
    const again = await complete(url);
    expect(again.status).toBe(200);
    expect(again.body.webswarm?.tokens).toEqual(expected);
    expect(again.body.webswarm?.verified).toBe(true);
  });
});
