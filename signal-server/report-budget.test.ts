// The socket event budget against a fast honest swarm and a report flooder,
// over Socket.IO: a real server on port 0 with a small budget, real-protocol
// Node volunteers computing on onnxruntime (3 stages × r = 1). A replica's owed
// step reports (one digest a step, and the last stage's logits) are not
// counted, so a long generation finishes with the reference runner's tokens
// and nothing dropped (before: its reports ran past the budget, one was
// dropped, and the step waited for the timeout); reports a replica does not
// owe (the same step again, steps far ahead) are counted, and a flood of them
// is cut off as any flood is.
import { describe, expect, it } from 'vitest';
import { GREEDY } from '../shared/model/sampling.js';
import { ensureStages } from './models/model-folder.js';
import { ReferenceRunner } from './reference/reference-runner.js';
import { httpSwarm, MODEL, PROMPT } from './testing/http-swarm.js';
import type { NodeVolunteer } from './testing/node-volunteer.js';

const { start, complete, joinAll, stageCache } = httpSwarm('reportbudget');
/** Tokens of the long generation: every volunteer owes about as many reports as the budget lets it send in all. */
const LONG = 120;
/** Room for what a volunteer sends besides its reports (hello, ready, proof, signalling, frames over the relay) and for 2 × LONG of them, not 3 × LONG. */
const BUDGET = { ratePerS: 2, burst: 2 * LONG + 60, maxDropped: 40 };

async function dropped(url: string): Promise<{ dropped: number; limited: number }> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const value = (name: string) =>
    Number(/^(\S+) (\S+)$/m.exec(text.split('\n').find((l) => l.startsWith(`${name} `)) ?? '')?.[2] ?? Number.NaN);
  return { dropped: value('webswarm_socket_events_dropped_total'), limited: value('webswarm_sockets_rate_limited_total') };
}

describe('step reports and the socket event budget (3 stages × r = 1, over Socket.IO)', () => {
  it('a long generation: every owed report served, none dropped, the reference tokens', async () => {
    const { url } = await start(3, 1, { socketEventBudget: BUDGET, stepTimeoutMs: 8_000 });
    const { dir } = await ensureStages(MODEL, { stages: 3 }, stageCache());
    const reference = await ReferenceRunner.fromStageDir(dir);
    const expected = (await reference.generateIds(reference.tokenizer.encode(PROMPT), LONG, GREEDY)).tokens;
    await reference.close();
    // The oracle is long enough to spend the budget three times over if reports were counted.
    expect(expected.length).toBe(LONG);
    await joinAll(url, 3, 20);
    for (let round = 0; round < 2; round++) {
      const res = await complete(url, LONG);
      expect(res.status, JSON.stringify(res.body.error)).toBe(200);
      expect(res.body.webswarm?.tokens).toEqual(expected);
    }
    expect(await dropped(url)).toEqual({ dropped: 0, limited: 0 });
  });

  it('a replica that repeats each digest 10 times and reports steps far ahead: those are counted, and it is cut off', async () => {
    const { url } = await start(3, 1, { socketEventBudget: { ratePerS: 2, burst: 100, maxDropped: 10 }, stepTimeoutMs: 8_000 });
    let flooder: NodeVolunteer | null = null;
    const all = await joinAll(url, 3, 30, (i) =>
      i === 0
        ? {
            tamper: (m) => {
              for (let k = 0; k < 10; k++) flooder?.socket.emit('step:digest', m);
              flooder?.socket.emit('step:digest', { ...m, step: m.step + 50 });
              return m;
            },
          }
        : {},
    );
    flooder = all[0] ?? null;
    expect(flooder?.stage).toBe(0);
    // 40 steps: 440 reports it does not owe, against a bucket of 100.
    const res = await complete(url, 40);
    // With r = 1 its own frames, over the relay, run out of budget too: the request ends by name, never hangs.
    if (res.status !== 200) expect(res.body.error?.code).toMatch(/^ERR_/);
    await expect.poll(async () => (await dropped(url)).limited, { timeout: 15_000 }).toBe(1);
    expect(flooder?.errors.map((e) => e.code)).toContain('ERR_RATE_LIMITED');
    // The honest replicas were not touched.
    for (const v of all.slice(1)) expect(v.errors.map((e) => e.code)).not.toContain('ERR_RATE_LIMITED');
  });
});
