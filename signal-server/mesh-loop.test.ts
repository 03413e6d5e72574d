// The mesh loop over Socket.IO: a real server on port 0 and real-protocol Node
// volunteers (their frames through the server's signalling relay, which relays
// only between peers a session links; see node-volunteer.ts), answers over the
// HTTP API compared with the reference runner's tokens. Hostile volunteers send
// stage 0 wrong tokens as real frames.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SamplingParams } from '../shared/model/sampling.js';
import { encodeFrame } from '../shared/protocol/frames.js';
import type { FaultBehaviour } from '../shared/swarm/faults.js';
import { tokenFrame } from '../shared/swarm/mesh-loop.js';
import { ensureStages } from './models/model-folder.js';
import { ReferenceRunner } from './reference/reference-runner.js';
import { type CompletionBody, httpSwarm, MODEL, PROMPT, TOKENS, WAIT_MS } from './testing/http-swarm.js';
import type { NodeVolunteer } from './testing/node-volunteer.js';

const { start, volunteer, readyCount, complete } = httpSwarm('meshloop');
const SEEDED: SamplingParams = { temperature: 1.3, topK: 0, topP: 1, seed: 77 };

let cache: string;
let seeded3: number[];
let seeded2: number[];

beforeAll(async () => {
  cache = mkdtempSync(join(tmpdir(), 'webswarm-meshloop-io-'));
  const want = async (stages: number) => {
    const runner = await ReferenceRunner.fromStageDir((await ensureStages(MODEL, { stages }, cache)).dir);
    try {
      return (await runner.generateIds(runner.tokenizer.encode(PROMPT), TOKENS, SEEDED)).tokens;
    } finally {
      await runner.close();
    }
  };
  seeded3 = await want(3);
  seeded2 = await want(2);
});

afterAll(() => rmSync(cache, { recursive: true, force: true }));

async function sampled(url: string): Promise<{ status: number; body: CompletionBody }> {
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'tiny-untied', prompt: PROMPT, max_tokens: TOKENS, temperature: SEEDED.temperature, seed: SEEDED.seed }),
  });
  return { status: res.status, body: (await res.json()) as CompletionBody };
}

/** Volunteers from distinct addresses, each waited for until it has its stage. */
async function volunteers(url: string, n: number, base: number, options: (i: number) => Parameters<typeof volunteer>[2] = () => ({})) {
  const all: NodeVolunteer[] = [];
  for (let i = 0; i < n; i++) {
    const v = volunteer(url, `127.0.0.${base + i}`, options(i));
    all.push(v);
    await expect.poll(() => v.stage, { timeout: WAIT_MS }).not.toBeNull();
  }
  await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(n);
  return all;
}

describe('the mesh loop over Socket.IO', () => {
  it('3 stages × r = 3: the reference tokens, greedy and seeded, stage 0 running on the last stage’s tokens', async () => {
    const { url, expected } = await start(3, 3);
    const all = await volunteers(url, 9, 140);
    const g = await complete(url);
    expect(g.status).toBe(200);
    expect(g.body.webswarm?.tokens).toEqual(expected);
    expect(g.body.webswarm?.verified).toBe(true);
    const s = await sampled(url);
    expect(s.status).toBe(200);
    expect(s.body.webswarm?.tokens).toEqual(seeded3);
    expect(all.filter((v) => v.stage === 0).reduce((n, v) => n + v.meshSteps, 0)).toBeGreaterThan(0);
    expect(all.flatMap((v) => v.errors)).toEqual([]);
  });

  it('3 stages × r = 1, seeded: the reference tokens', async () => {
    const { url } = await start(3, 1);
    const all = await volunteers(url, 3, 150);
    const s = await sampled(url);
    expect(s.body.webswarm?.tokens).toEqual(seeded3);
    expect(all[0]?.meshSteps).toBeGreaterThan(0);
  });

  it('a lone last-stage replica that sends stage 0 wrong tokens (real frames): rolled back, the reference tokens, evicted as the vote proves', async () => {
    const { url, expected } = await start(2, 1, { fallback: 'stage' });
    // Honest reports and logits; to stage 0, another token than its own logits give.
    const lie: FaultBehaviour = { output: (_s, d) => d, delayMs: 0, token: (_step, t) => (t === 0 ? 1 : t - 1) };
    const [first, liar] = (await volunteers(url, 2, 160, (i) => (i === 1 ? { fault: lie } : {}))) as [NodeVolunteer, NodeVolunteer];
    expect([first.stage, liar.stage]).toEqual([0, 1]);
    const r = await complete(url);
    expect(r.status).toBe(200);
    // Only verified tokens reached the requester: the reference's, although stage 0 computed on the liar's.
    expect(r.body.webswarm?.tokens).toEqual(expected);
    expect(liar.errors.map((e) => e.code)).toContain('ERR_EQUIVOCATION');
    // No spare: the server computes the last stage once the liar is gone, and the tokens say so.
    expect(r.body.webswarm?.votes.at(-1)?.server_stages).toEqual([1]);
    expect(r.body.webswarm?.votes[0]?.server_stages).toEqual([]);
  });

  it("a route member of another stage sending stage 0 token frames as the last stage's replica: dropped, the reference tokens", async () => {
    const { url, expected } = await start(3, 1);
    const all = await volunteers(url, 3, 170);
    const [first, middle] = all as [NodeVolunteer, NodeVolunteer];
    // Stage 1 is linked to stage 0 (the relay passes its frames), but is not the last stage.
    middle.socket.on('session:open', (m) => {
      for (let step = 1; step <= 3; step++)
        for (const bytes of encodeFrame(tokenFrame(m.sessionId, step, 2, 0, 7)))
          middle.socket.emit('signal', { to: first.id as string, data: { f: Buffer.from(bytes).toString('base64') } });
    });
    const r = await complete(url);
    expect(r.status).toBe(200);
    expect(r.body.webswarm?.tokens).toEqual(expected);
    expect(first.rejections.filter((x) => x.startsWith(`ERR_NOT_LINKED token from ${middle.id}`)).length).toBeGreaterThan(0);
  });

  it('a volunteer no session links cannot reach stage 0 at all: the relay refuses it by name', async () => {
    const { url, expected } = await start(2, 1);
    const all = await volunteers(url, 3, 180);
    const stranger = volunteer(url, '127.0.0.189');
    await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(4);
    const firsts = all.filter((v) => v.stage === 0);
    for (const to of firsts)
      for (let step = 1; step <= 3; step++)
        for (const bytes of encodeFrame(tokenFrame(1, step, 1, 0, 7)))
          stranger.socket.emit('signal', { to: to.id as string, data: { f: Buffer.from(bytes).toString('base64') } });
    const r = await complete(url);
    expect(r.body.webswarm?.tokens).toEqual(expected);
    await expect.poll(() => stranger.errors.map((e) => e.code), { timeout: WAIT_MS }).toContain('ERR_NOT_LINKED');
    expect(firsts.flatMap((v) => v.rejections).filter((x) => x.includes(stranger.id as string))).toEqual([]);
  });

  it("the server's replica as the last stage (its tokens reach stage 0 over the socket), then as stage 0: the reference tokens", async () => {
    const { url } = await start(2, 1, { fallback: 'stage', routeWaitMs: 30_000 });
    const [only] = await volunteers(url, 1, 190);
    expect(only?.stage).toBe(0);
    const last = await sampled(url);
    expect(last.status).toBe(200);
    expect(last.body.webswarm?.tokens).toEqual(seeded2);
    expect(last.body.webswarm?.server_stages).toEqual([1]);
    expect(only?.meshSteps).toBeGreaterThan(0);
    // Then a volunteer of stage 1 comes and the one of stage 0 goes: the server computes stage 0 from the volunteer's tokens.
    const second = volunteer(url, '127.0.0.199');
    await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(2);
    expect(second.stage).toBe(1);
    await only?.close();
    await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(1);
    const first = await sampled(url);
    expect(first.status).toBe(200);
    expect(first.body.webswarm?.tokens).toEqual(seeded2);
    expect(first.body.webswarm?.server_stages).toEqual([0]);
  });
});
