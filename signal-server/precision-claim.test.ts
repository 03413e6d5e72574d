// One precision per swarm: the manifest names it and the stage files' sha256
// follow from it, so an honest volunteer runs nothing else. A volunteer that
// runs another precision anyway (and says nothing) answers its challenge step
// with numbers off by more than the vote's tolerance, and is evicted before it
// counts as ready. (f16 against f32 can fall within the tolerance, which is
// then by definition an agreeing answer: measured 4.6e-4 on austen-2m.)
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { WeightPrecision } from '../shared/model/quantize.js';
import { goldenModelDir } from '../testing/golden.js';
import { fetchSwarmListing } from '../testing/swarm-listing.js';
import { ensureStages } from './models/model-folder.js';
import type { SignalServer } from './server.js';
import type { NodeVolunteer } from './testing/node-volunteer.js';
import { oneStageSwarm, volunteerAt } from './testing/stage-swap.js';

const WAIT_MS = 30_000;
const MODEL = goldenModelDir('austen-2m');

let cache: string;
const servers: SignalServer[] = [];
const volunteers: NodeVolunteer[] = [];
beforeAll(() => {
  cache = mkdtempSync(join(tmpdir(), 'webswarm-precision-claim-'));
});
afterEach(async () => {
  for (const v of volunteers.splice(0)) await v.close();
  for (const s of servers.splice(0)) await s.close();
});
afterAll(() => rmSync(cache, { recursive: true, force: true }));

/** A one-stage swarm of austen-2m in `weights`. */
async function swarm(weights: WeightPrecision): Promise<string> {
  return oneStageSwarm(await ensureStages(MODEL, { stages: 1 }, cache, { weights: weights }), servers);
}

/** The stage file of austen-2m in another precision. */
async function stageIn(weights: WeightPrecision): Promise<Uint8Array> {
  const { dir, manifest } = await ensureStages(MODEL, { stages: 1 }, cache, { weights: weights });
  return readFileSync(join(dir, (manifest.stages[0] as { file: string }).file));
}

function volunteer(url: string, address: string, stageFile?: Uint8Array): NodeVolunteer {
  return volunteerAt(url, address, volunteers, stageFile);
}

describe('a volunteer running another weight precision than its swarm', () => {
  it.each([
    ['f32', 'q8'],
    ['q4', 'f32'],
    ['q8', 'q4'],
  ] as [WeightPrecision, WeightPrecision][])(
    'in a %s swarm, one running %s fails its challenge; one running the swarm precision is ready',
    async (swarmWeights, other) => {
      const url = await swarm(swarmWeights);
      const honest = volunteer(url, '127.0.0.21');
      const wrong = volunteer(url, '127.0.0.22', await stageIn(other));
      await expect.poll(() => wrong.errors.map((e) => e.code), { timeout: WAIT_MS }).toContain('ERR_CHALLENGE_FAILED');
      await expect.poll(async () => (await fetchSwarmListing(url)).list.filter((v) => v.ready).length, { timeout: WAIT_MS }).toBe(1);
      expect(honest.errors).toEqual([]);
    },
  );
});
