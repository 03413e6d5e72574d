// Red team: a scored prompt (echo) whose tokens went to stage 0 ahead (283ae5c), replayed on a new partition
// mid-prompt: a volunteer leaves after stage 0 computed steps the coordinator had not begun, 3 stages x r = 2 can
// no longer be kept. Each position must be scored once, with the reference's log-probability, and the tokens
// after the prompt (with a penalty) the reference's.
import { describe, expect, it } from 'vitest';
import { GREEDY } from '../shared/model/sampling.js';
import { tokenLogprob } from './api/logprobs.js';
import { ensureStages } from './models/model-folder.js';
import { ReferenceRunner } from './reference/reference-runner.js';
import { httpSwarm, MODEL, PROMPT } from './testing/http-swarm.js';
import type { NodeVolunteer } from './testing/node-volunteer.js';
import { promptLogprobs } from './testing/prompt-logprobs.js';

const { start, volunteer, readyCount, stageCache } = httpSwarm('rt-score-replay');
const READY_MS = 90_000;
const TOKENS = 3;

describe('a scored prompt sent ahead, replayed on a new partition', () => {
  for (const [stage, after] of [
    [0, 2],
    [0, 6],
    [2, 4],
  ] as const)
    it(`a volunteer of stage ${stage} leaves after computing ${after} steps (stage 0 ahead of the coordinator), with frequency_penalty: each position once, the reference's`, async () => {
      const { server, url, tokenizer } = await start(3, 2, { stepTimeoutMs: 20_000, repartition: { stageCache: stageCache() } });
      const coordinator = server.coordinator;
      if (coordinator === null) throw new Error('no coordinator');
      const sampling = { ...GREEDY, frequencyPenalty: 1 };
      const ids = tokenizer.encode(PROMPT);
      const runner = await ReferenceRunner.fromStageDir((await ensureStages(MODEL, { stages: 3 }, stageCache())).dir);
      const expected = (await runner.generateIds(ids, TOKENS, sampling)).tokens;
      const want = await promptLogprobs(runner, ids);
      await runner.close();
      const vs = Array.from({ length: 6 }, (_, i) => volunteer(url, `127.0.${stage + 1}.${after * 10 + i}`));
      await expect.poll(() => readyCount(url), { timeout: READY_MS }).toBe(6);
      (vs.find((v) => v.stage === stage) as NodeVolunteer).leaveAfter(after);
      const positions: number[] = [];
      const got: number[] = [];
      const c = await coordinator.complete({ prompt: PROMPT, maxTokens: TOKENS, sampling, scorePrompt: true }, undefined, (u) => {
        positions.push(u.position);
        if (u.logits !== null) got.push(tokenLogprob(u.logits, u.token, 0).logprob);
      });
      expect(coordinator.replays).toBeGreaterThanOrEqual(1);
      expect(positions).toEqual(ids.map((_, i) => i));
      for (let i = 0; i < want.length; i++)
        expect(Math.abs((got[i] as number) - (want[i] as number)), `position ${i + 1}`).toBeLessThan(1e-5);
      expect(c.tokens).toEqual(expected);
    }, 200_000);
});
