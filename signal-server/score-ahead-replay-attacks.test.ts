// Red team: a scored prompt (echo) whose tokens went to stage 0 ahead (283ae5c), replayed on a new partition
// mid-prompt: a volunteer leaves after stage 0 computed steps the coordinator had not begun, 3 stages x r = 2 can
// no longer be kept. Each position must be scored once, with the reference's log-probability, and the tokens
// after the prompt (with a penalty) the reference's.
import { describe, it } from 'vitest';
import { GREEDY } from '../shared/model/sampling.js';
import { httpSwarm } from './testing/http-swarm.js';
import { expectScoredReplay } from './testing/scored-run.js';

const swarm = httpSwarm('rt-score-replay');
const TOKENS = 3;

describe('a scored prompt sent ahead, replayed on a new partition', () => {
  for (const [stage, after] of [
    [0, 2],
    [0, 6],
    [2, 4],
  ] as const)
    it(`a volunteer of stage ${stage} leaves after computing ${after} steps (stage 0 ahead of the coordinator), with frequency_penalty: each position once, the reference's`, async () => {
      await expectScoredReplay(swarm, {
        stage,
        after,
        sampling: { ...GREEDY, frequencyPenalty: 1 },
        tokens: TOKENS,
        address: (i) => `127.0.${stage + 1}.${after * 10 + i}`,
      });
    }, 200_000);
});
