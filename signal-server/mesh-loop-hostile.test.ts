// The mesh loop attacked from inside a route, over Socket.IO: a real server on
// port 0 and real-protocol Node volunteers computing on onnxruntime, one of
// them hostile with what any route member can send (its own step:digest
// events). The requester must get the reference runner's tokens, and no honest
// volunteer may be replaced or blamed for what the hostile one did.
import { describe, expect, it } from 'vitest';
import type { SamplingParams } from '../shared/model/sampling.js';
import type { StepDigest } from '../shared/protocol/messages.js';
import type { FaultBehaviour } from '../shared/swarm/faults.js';
import { MESH_AHEAD, tokenPrint } from '../shared/swarm/mesh-loop.js';
import { ensureStages } from './models/model-folder.js';
import { ReferenceRunner } from './reference/reference-runner.js';
import { httpSwarm, MODEL, PROMPT, WAIT_MS } from './testing/http-swarm.js';
import type { NodeVolunteer } from './testing/node-volunteer.js';

const { start, complete, stageCache, joinAll: volunteers } = httpSwarm('meshhostile');
const NUCLEUS: SamplingParams = { temperature: 1, topK: 0, topP: 0.9, seed: 5 };
const MAX_TOKENS = 12;

interface Choice {
  readonly text: string;
  readonly finish_reason: string | null;
}

/** A seeded completion with a stop sequence, streamed (the SSE chunks' text joined) or not. */
async function stopped(
  url: string,
  stop: string,
  stream: boolean,
): Promise<{ text: string; finish: string | null; tokens?: number[] | undefined }> {
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model: 'tiny-untied',
      prompt: PROMPT,
      max_tokens: MAX_TOKENS,
      temperature: NUCLEUS.temperature,
      top_p: NUCLEUS.topP,
      seed: NUCLEUS.seed,
      stop,
      stream,
    }),
  });
  expect(res.status).toBe(200);
  if (!stream) {
    const body = (await res.json()) as { choices: Choice[]; webswarm?: { tokens: number[] } };
    return { text: body.choices[0]?.text ?? '', finish: body.choices[0]?.finish_reason ?? null, tokens: body.webswarm?.tokens };
  }
  let text = '';
  let finish: string | null = null;
  for (const line of (await res.text()).split('\n')) {
    if (!line.startsWith('data: ') || line === 'data: [DONE]') continue;
    const chunk = JSON.parse(line.slice(6)) as { choices?: Choice[] };
    text += chunk.choices?.[0]?.text ?? '';
    finish = chunk.choices?.[0]?.finish_reason ?? finish;
  }
  return { text, finish };
}

/** The reference runner's seeded tokens for PROMPT on `stages` stages. */
async function referenceTokens(stages: number): Promise<number[]> {
  const runner = await ReferenceRunner.fromStageDir((await ensureStages(MODEL, { stages }, stageCache())).dir);
  try {
    return (await runner.generateIds(runner.tokenizer.encode(PROMPT), MAX_TOKENS, NUCLEUS)).tokens;
  } finally {
    await runner.close();
  }
}

describe('the mesh loop against a hostile route member', () => {
  it('r = 3: a replica flooding reports of the steps to come (held while the loop runs ahead) cannot crowd out the honest ones', async () => {
    const { url, expected } = await start(3, 3, { stepTimeoutMs: 8_000 });
    let hostile: NodeVolunteer | null = null;
    // With each real report, many copies of a made-up one for every step within the loop's reach ahead:
    // more than the coordinator keeps of all replicas' early reports together.
    const flood = (m: StepDigest): StepDigest => {
      for (let ahead = 1; ahead <= MESH_AHEAD + 1; ahead++)
        for (let i = 0; i < 50; i++)
          hostile?.socket.emit('step:digest', { ...m, step: m.step + ahead, digest: m.digest.map((x) => x + 1) });
      return m;
    };
    const all = await volunteers(url, 9, 200, (i) => (i === 1 ? { tamper: flood } : {}));
    hostile = all[1] as NodeVolunteer;
    expect(hostile.stage).toBe(1);
    const r = await complete(url);
    expect(r.body.error).toBeUndefined();
    expect(r.status).toBe(200);
    expect(r.body.webswarm?.tokens).toEqual(expected);
    // Every step had the honest majority of every stage: their reports were counted, none of them replaced.
    expect(r.body.webswarm?.votes.every((t) => t.votes.every((v) => v.agreed >= 2))).toBe(true);
    const honest = all.filter((v) => v !== hostile);
    // Nor told off (relay refusals of frames to the evicted hostile, still in flight, are no blame).
    expect(honest.flatMap((v) => v.errors.map((e) => e.code)).filter((c) => c !== 'ERR_NOT_LINKED')).toEqual([]);
    // The hostile one's made-up reports disagree with its stage: its record shows it.
    expect(hostile.errors.map((e) => e.code)).toContain('ERR_EVICTED');
  }, 60_000);

  it('r = 1, a lone last-stage liar, seeded top-p with a stop sequence, streamed then not: the reference text up to the stop, nothing beyond', async () => {
    const { url, tokenizer } = await start(2, 1, { fallback: 'stage' });
    const ref = await referenceTokens(2);
    const full = tokenizer.decode(ref);
    // A stop sequence that first appears well inside the text: the loop runs ahead past it.
    const stop = full.slice(Math.floor(full.length / 2), Math.floor(full.length / 2) + 3);
    const want = full.slice(0, full.indexOf(stop));
    expect(want.length).toBeGreaterThan(0);
    const lie: FaultBehaviour = { output: (_s, d) => d, delayMs: 0, token: (_step, t) => (t === 0 ? 1 : t - 1) };
    const [, liar] = (await volunteers(url, 2, 220, (i) => (i === 1 ? { fault: lie } : {}))) as [NodeVolunteer, NodeVolunteer];
    expect(liar.stage).toBe(1);
    const streamed = await stopped(url, stop, true);
    expect(streamed).toEqual({ text: want, finish: 'stop' });
    await expect.poll(() => liar.errors.map((e) => e.code), { timeout: WAIT_MS }).toContain('ERR_EQUIVOCATION');
    const plain = await stopped(url, stop, false);
    expect(plain.text).toBe(want);
    expect(plain.finish).toBe('stop');
    expect(ref.slice(0, plain.tokens?.length)).toEqual(plain.tokens);
  }, 60_000);

  it('r = 3: a stage-0 replica that says it computed on another token and that the last stage sent it: outvoted, nobody framed', async () => {
    const { url, expected } = await start(3, 3, { stepTimeoutMs: 8_000 });
    // Its reports claim another input than the verified token, and accuse every last-stage sender of having sent it.
    const claim = (m: StepDigest): StepDigest =>
      m.step === 0 ? m : { ...m, input: tokenPrint(7), received: m.received.map((x) => ({ from: x.from, digest: tokenPrint(7) })) };
    const all = await volunteers(url, 9, 230, (i) => (i === 0 ? { tamper: claim } : {}));
    const liar = all[0] as NodeVolunteer;
    expect(liar.stage).toBe(0);
    const r = await complete(url);
    expect(r.status).toBe(200);
    expect(r.body.webswarm?.tokens).toEqual(expected);
    // Stage 0's honest majority computed on the verified token each step: the liar alone is outvoted.
    const votes = r.body.webswarm?.votes ?? [];
    expect(votes.slice(1).every((t) => (t.votes[0]?.agreed ?? 0) >= 2)).toBe(true);
    expect(votes.slice(1).some((t) => t.votes[0]?.disagreed === 1)).toBe(true);
    const honest = all.filter((v) => v !== liar);
    expect(honest.flatMap((v) => v.errors.map((e) => e.code)).filter((c) => c !== 'ERR_NOT_LINKED')).toEqual([]);
  }, 60_000);
});
