// The last stage's head runs on each row's last position unless a call's
// logits_from says every position (a scored prompt's steps), and the server's
// challenge steps come from that graph with the last position's. A volunteer that runs the
// head on every position anyway (a stage file cut before the change, or a
// client of its own, saying nothing) reports a digest of all its challenge
// step's rows: it fails the challenge and is never ready; an honest volunteer
// beside it is. Real server on port 0, real socket.io clients, real stages.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { GraphForm } from '../shared/model/stage-graph-fused.js';
import { goldenModelDir } from '../testing/golden.js';
import { fetchSwarmListing } from '../testing/swarm-listing.js';
import { ensureStages } from './models/model-folder.js';
import type { SignalServer } from './server.js';
import type { NodeVolunteer } from './testing/node-volunteer.js';
import { oneStageSwarm, volunteerAt } from './testing/stage-swap.js';

const WAIT_MS = 30_000;

let cache: string;
const servers: SignalServer[] = [];
const volunteers: NodeVolunteer[] = [];
beforeAll(() => {
  cache = mkdtempSync(join(tmpdir(), 'webswarm-stale-head-'));
});
afterEach(async () => {
  for (const v of volunteers.splice(0)) await v.close();
  for (const s of servers.splice(0)) await s.close();
});
afterAll(() => rmSync(cache, { recursive: true, force: true }));

describe('a volunteer whose last stage runs the head on every position', () => {
  it.each([
    ['austen-2m', 'plain'],
    ['tiny-gqa-bias', 'fused'],
  ] as [string, GraphForm][])('%s, %s: fails its challenge; one running the swarm’s stage is ready', async (id, graph) => {
    const model = goldenModelDir(id);
    const { dir, manifest } = await ensureStages(model, { stages: 1 }, cache, { graph });
    expect(manifest.stages[0]?.outputs[0]?.shape).toEqual(['batch', 'logit_rows', manifest.model.vocabSize]);
    expect(manifest.stages[0]?.inputs.map((i) => i.name)).toContain('logits_from');
    const stale = await ensureStages(model, { stages: 1 }, cache, { graph, head: 'all' });
    const url = await oneStageSwarm({ dir, manifest }, servers);
    const honest = volunteerAt(url, '127.0.0.31', volunteers);
    const wrong = volunteerAt(url, '127.0.0.32', volunteers, readFileSync(join(stale.dir, stale.manifest.stages[0]?.file ?? '')));
    await expect.poll(() => wrong.errors.map((e) => e.code), { timeout: WAIT_MS }).toContain('ERR_CHALLENGE_FAILED');
    await expect.poll(async () => (await fetchSwarmListing(url)).list.filter((v) => v.ready).length, { timeout: WAIT_MS }).toBe(1);
    expect(honest.errors).toEqual([]);
    expect(honest.ready).toBe(true);
  });
});
