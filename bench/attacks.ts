/**
 * Attacks, measured on a real server with hostile clients that speak the real
 * protocol (testing/node-volunteer.ts: socket.io clients in Node running the
 * real replica; frames through the server's relay in place of WebRTC). For each
 * attack: tokens accepted as verified that differ from the reference runner's
 * (must be 0), when it was detected, whether the attacker was evicted, and the
 * requests lost; and a burst of 50 requests: answered, refused fast, timed out.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GREEDY, type SamplingParams, seededRandom } from '../shared/model/sampling.js';
import { faultBehaviour } from '../shared/swarm/faults.js';
import { ensureStages, partitionKey } from '../signal-server/models/model-folder.js';
import { ReferenceRunner } from '../signal-server/reference/reference-runner.js';
import { createSignalServer, type SignalServer } from '../signal-server/server.js';
import { NodeVolunteer, type NodeVolunteerOptions, spellingLogits } from '../signal-server/testing/node-volunteer.js';
import { printTable } from './table.js';

const PROMPT = 'It is a truth universally acknowledged, that a single man';
const READY_TIMEOUT_MS = 60_000;
const SEEDED: SamplingParams = { temperature: 1, topK: 0, topP: 1, seed: 11 };

interface Rig {
  readonly server: SignalServer;
  readonly url: string;
  readonly volunteers: NodeVolunteer[];
}

async function until(what: string, check: () => boolean | Promise<boolean>, ms = READY_TIMEOUT_MS): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function benchAttacks(o: { modelDir: string; tokens: number; requests: number }): Promise<void> {
  const cache = mkdtempSync(join(tmpdir(), 'webswarm-bench-attacks-'));
  const rows: string[][] = [];
  const references = new Map<string, number[]>();
  const refOf = async (dir: string, sampling: SamplingParams): Promise<number[]> => {
    const key = `${dir}/${sampling.temperature}/${sampling.seed}`;
    let t = references.get(key);
    if (t === undefined) {
      const runner = await ReferenceRunner.fromStageDir(dir);
      t = (await runner.generateIds(runner.tokenizer.encode(PROMPT), o.tokens, sampling)).tokens;
      await runner.close();
      references.set(key, t);
    }
    return t;
  };
  const rig = async (stages: number, extra: Partial<Parameters<typeof createSignalServer>[0]> = {}) => {
    const { dir, manifest } = await ensureStages(o.modelDir, { stages }, cache);
    const server = createSignalServer({
      port: 0,
      host: '127.0.0.1',
      webRoot: null,
      models: [{ dir, manifest, key: partitionKey(manifest.model.numLayers, { stages }) }],
      redundancy: 3,
      routeWaitMs: 3_000,
      joinTimeoutMs: 20_000,
      ratePerMinute: 0,
      apiMaxConcurrent: 0,
      spotCheckRate: 0,
      random: seededRandom(5),
      ...extra,
    });
    await server.ready;
    return { server, url: server.address().url, volunteers: [] as NodeVolunteer[], dir };
  };
  const add = (r: Rig, address: string, options: NodeVolunteerOptions = {}) => {
    const v = new NodeVolunteer(r.url, {
      localAddress: address,
      clientKey: `bench-${address.replaceAll('.', '-')}-${r.volunteers.length}`,
      ...options,
    });
    r.volunteers.push(v);
    return v;
  };
  const readyCount = (r: Rig) => r.server.coordinator?.volunteers().filter((v) => v.ready).length ?? 0;
  const close = async (r: Rig) => {
    for (const v of r.volunteers) await v.close();
    await r.server.close();
  };
  const request = async (url: string, sampling: SamplingParams) => {
    const t0 = performance.now();
    const res = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: PROMPT, max_tokens: o.tokens, temperature: sampling.temperature, seed: sampling.seed }),
    });
    const body = (await res.json()) as { webswarm?: { tokens: number[]; verified: boolean }; error?: { code: string } };
    return {
      status: res.status,
      tokens: body.webswarm?.tokens ?? [],
      verified: body.webswarm?.verified === true,
      ms: performance.now() - t0,
      code: body.error?.code,
    };
  };
  /** Runs `requests` requests; counts wrong-but-verified tokens against the reference, and lost requests. */
  const attack = async (
    name: string,
    r: Rig & { dir: string },
    attackers: NodeVolunteer[],
    sampling: SamplingParams = GREEDY,
    undetected = 'never evicted',
  ): Promise<void> => {
    const expected = await refOf(r.dir, sampling);
    let wrong = 0;
    let lost = 0;
    let detectedAt = '';
    for (let i = 0; i < o.requests; i++) {
      const res = await request(r.url, sampling);
      if (res.status !== 200) lost += 1;
      else if (res.verified) wrong += res.tokens.filter((t, k) => t !== expected[k]).length;
      if (detectedAt === '') {
        const e = attackers.flatMap((a) => a.errors).find((x) => x.code !== 'ERR_NOT_LINKED');
        if (e !== undefined) detectedAt = `request ${i + 1}: ${e.code} ${e.message.replace(/^evicted: /, '').slice(0, 70)}`;
      }
    }
    const evicted = attackers.filter((a) => a.errors.some((e) => /ERR_EVICTED|ERR_EQUIVOCATION|ERR_CHALLENGE_FAILED/.test(e.code))).length;
    rows.push([
      name,
      String(wrong),
      detectedAt === '' ? undetected : detectedAt,
      `${evicted}/${attackers.length}`,
      `${lost}/${o.requests}`,
    ]);
  };
  try {
    const tokenizerOf = async (dir: string) => (await ReferenceRunner.fromStageDir(dir)).tokenizer;
    {
      const r = await rig(1);
      const sentence = (await tokenizerOf(r.dir)).encode(' I am the captain now and forever more, said the sybil');
      const sybils = [add(r, '127.0.0.66', { fault: spellingLogits(sentence) }), add(r, '127.0.0.66', { fault: spellingLogits(sentence) })];
      for (let i = 0; i < 3; i++) add(r, `127.0.0.${11 + i}`);
      await until('5 ready', () => readyCount(r) === 5);
      await attack('sybil pair (two sockets, one address, one-hot logits)', r, sybils);
      await close(r);
    }
    {
      const r = await rig(2);
      const liars: NodeVolunteer[] = [];
      // Stages are handed out in turn: volunteers 0, 2, 4, 6, 8 hold stage 0; 0 and 2 equivocate.
      for (let i = 0; i < 10; i++) {
        const v = add(r, `127.0.0.${50 + i}`, i === 0 || i === 2 ? { fault: faultBehaviour('equivocate', 1) } : {});
        if (i === 0 || i === 2) liars.push(v);
        await until('a stage', () => v.stage !== null);
      }
      await until('10 ready', () => readyCount(r) === 10);
      await attack('two colluding equivocators in stage 0 (of 5)', r, liars);
      await close(r);
    }
    {
      const r = await rig(1);
      const silent = add(r, '127.0.0.90', { joins: false });
      for (let i = 0; i < 3; i++) add(r, `127.0.0.${91 + i}`);
      await until('4 ready', () => readyCount(r) === 4);
      await attack('silent joiner (takes sessions, never joins)', r, [silent]);
      await close(r);
    }
    {
      const r = await rig(1);
      const nudger = add(r, '127.0.0.70', { fault: faultBehaviour('nudge', 3) });
      for (let i = 0; i < 2; i++) add(r, `127.0.0.${71 + i}`);
      await until('3 ready', () => readyCount(r) === 3);
      await attack('nudger inside the tolerance (seeded, temperature 1)', r, [nudger], SEEDED, 'never: it agrees, and moves nothing');
      await close(r);
    }
    {
      const r = await rig(1);
      const lazy = add(r, '127.0.0.80', { readyAtOnce: true, challenges: 'garbage' });
      for (let i = 0; i < 3; i++) add(r, `127.0.0.${81 + i}`);
      await until('3 ready', () => readyCount(r) === 3);
      await attack('says ready without computing (wrong challenge answer)', r, [lazy]);
      await close(r);
    }
    printTable(
      `attacks by hostile clients on a real server, r = 3 (${o.requests} requests × ${o.tokens} tokens each)`,
      ['attack', 'wrong but verified tokens', 'detected', 'evicted', 'requests lost'],
      rows,
    );
    {
      const r = await rig(1, { maxQueued: 8, routeWaitMs: 20_000 });
      // Slow replicas (200 ms a step) so that sessions pile up as on a loaded swarm.
      for (let i = 0; i < 3; i++) add(r, `127.0.0.${100 + i}`, { fault: { delayMs: 200, output: (_s, d) => d } });
      await until('3 ready', () => readyCount(r) === 3);
      const results = await Promise.all(Array.from({ length: 50 }, () => request(r.url, GREEDY)));
      const answered = results.filter((x) => x.status === 200).length;
      const fast = results.filter((x) => x.status === 503 && x.code === 'ERR_BUSY' && x.ms < 1_000).length;
      const timedOut = results.filter((x) => x.code === 'ERR_STEP_TIMEOUT' || x.code === 'ERR_NO_ROUTE').length;
      printTable(
        'a burst of 50 concurrent requests on 3 replicas (16 sessions each, 8 may wait)',
        ['answered', 'refused fast (503 ERR_BUSY, < 1 s)', 'timed out'],
        [[String(answered), String(fast), String(timedOut)]],
      );
      await close(r);
    }
  } finally {
    rmSync(cache, { recursive: true, force: true });
  }
}
