// The in-process swarm most coordinator tests run on: the tiny-gqa-bias golden
// model cut into stages in a temporary cache, one swarm of r replicas a stage,
// and the reference runner's greedy tokens for one prompt, the oracle.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GREEDY } from '../../shared/model/sampling.js';
import { goldenModelDir } from '../../testing/golden.js';
import type { SessionTimeouts } from '../coordinator/generation.js';
import { ensureStages, loadStageSet } from '../models/model-folder.js';
import { ReferenceRunner } from '../reference/reference-runner.js';
import { createInProcessSwarm, type InProcessSwarm, releaseInProcessSwarm } from './in-process-swarm.js';

export interface GoldenSwarm {
  readonly cache: string;
  readonly swarm: InProcessSwarm;
  readonly stageBytes: readonly Uint8Array[];
  readonly reference: ReferenceRunner;
  readonly promptIds: number[];
  /** The reference runner's greedy tokens for the prompt. */
  readonly expected: number[];
}

export const GOLDEN_PROMPT = 'It is a truth universally acknowledged';

/** Cuts the golden model into `stages`, starts a swarm of `r` replicas a stage and computes the reference's `tokens` greedy tokens. */
export async function startGoldenSwarm(
  prefix: string,
  o: { stages: number; r: number; tokens: number; timeouts: SessionTimeouts },
): Promise<GoldenSwarm> {
  const cache = mkdtempSync(join(tmpdir(), prefix));
  const { dir } = await ensureStages(goldenModelDir('tiny-gqa-bias'), { stages: o.stages }, cache);
  const set = await loadStageSet(dir);
  const swarm = await createInProcessSwarm(set.manifest, set.stageBytes, o.r, o.timeouts);
  const reference = await ReferenceRunner.fromStageDir(dir);
  const promptIds = reference.tokenizer.encode(GOLDEN_PROMPT);
  const expected = (await reference.generateIds(promptIds, o.tokens, GREEDY)).tokens;
  return { cache, swarm, stageBytes: set.stageBytes, reference, promptIds, expected };
}

export async function closeGoldenSwarm(g: GoldenSwarm | undefined): Promise<void> {
  if (g === undefined) return;
  await releaseInProcessSwarm(g.swarm);
  await g.reference.close();
  rmSync(g.cache, { recursive: true, force: true });
}
