// A scored prompt (completions' echo + logprobs) coordinated by one process and computed by volunteers of another:
// each step of the last stage carries up to maxScoreRows rows of logits, as scored forms (top-logits.ts: 268 bytes a
// row, where a whole row of this vocabulary is 8 KiB), which cross Redis in the volunteers' reports. Two real servers and a real redis-server; node volunteers computing on
// onnxruntime; the reference runner fed the prompt a token at a time is the oracle. One stage: node volunteers relay
// their data-channel messages through `signal` events (16 KiB at most), where 96 positions' hidden states do not fit;
// browsers' chunked frames over real data channels are e2e/swarm.spec.ts's.
import { beforeAll, describe, expect, it } from 'vitest';
import { maxScoreRows } from '../../shared/protocol/messages.js';
import { SCORED_ROW_LENGTH } from '../../shared/vote/top-logits.js';
import { ensureStages } from '../models/model-folder.js';
import { ReferenceRunner } from '../reference/reference-runner.js';
import type { SignalServer } from '../server.js';
import { clusterTestFile, procOf, startCluster, until, watchChannel } from '../testing/cluster-servers.js';
import { NodeVolunteer } from '../testing/node-volunteer.js';
import { promptLogprobs } from '../testing/prompt-logprobs.js';

const MODEL = 'fixtures/models/tiny-untied';
const STAGES = 1;
const SENTENCE = 'It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife.';
const PROMPT = `${SENTENCE} ${SENTENCE} ${SENTENCE}`;
/**
 * The same WASM kernels on both sides, but the swarm computes a step's positions in one call and the reference one
 * at a time (another summation order): 1.1e-5 at log-probabilities near −8 in a run; the bound is 1e-4.
 */
const TOLERANCE = 1e-4;

let ids: number[];
let want: number[];
let vocab: number;
const f = clusterTestFile('cluster-scoring');
const { servers, volunteers } = f;

beforeAll(async () => {
  const { dir } = await ensureStages(MODEL, { stages: STAGES }, f.cache);
  const reference = await ReferenceRunner.fromStageDir(dir);
  ids = reference.tokenizer.encode(PROMPT);
  vocab = reference.manifest.model.vocabSize;
  want = await promptLogprobs(reference, ids);
  await reference.close();
});

describe("a scored prompt computed by another process's volunteers", () => {
  it('gives every position the reference’s log-probability, a step’s many rows of logits crossing Redis', async () => {
    const c = await startCluster(2, f.redisUrl, { model: MODEL, stages: STAGES, redundancy: 1, cache: f.cache });
    servers.push(...c.servers);
    const [a, b] = c.servers as [SignalServer, SignalServer];
    for (let i = 0; i < STAGES; i++) volunteers.push(new NodeVolunteer(b.address().url, { clientKey: `scoring-key-${i}` }));
    await until('a sees the stage ready', () => a.coordinator?.volunteers().filter((x) => x.ready).length === STAGES);
    const rows = maxScoreRows(vocab);
    // Longer than one step's rows: the first C positions in step 0, the rest in chunks of C.
    expect(ids.length).toBeGreaterThan(rows + 1);
    const inbox = await watchChannel(f.redisUrl, `${c.prefix}:proc:${procOf(a)}`);
    const before = volunteers.map((v) => v.steps);
    const res = await fetch(`${a.address().url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: PROMPT, max_tokens: 0, echo: true, logprobs: 1 }),
    });
    const body = (await res.json()) as { choices?: { text: string; logprobs: { token_logprobs: (number | null)[] } }[] };
    const largest = inbox.bytes();
    await inbox.stop();
    expect({ status: res.status, body: res.status === 200 ? null : body }).toEqual({ status: 200, body: null });
    const got = body.choices?.[0]?.logprobs.token_logprobs ?? [];
    expect(body.choices?.[0]?.text).toBe(PROMPT);
    expect(got).toHaveLength(ids.length);
    expect(got[0]).toBeNull();
    for (let i = 1; i < ids.length; i++)
      expect(Math.abs((got[i] as number) - (want[i - 1] as number)), `position ${i}`).toBeLessThan(TOLERANCE);
    // Each stage computed step 0 (C positions) and a step per chunk after it: far fewer than a step per position.
    for (const [i, v] of volunteers.entries()) expect(v.steps - (before[i] as number)).toBe(1 + Math.ceil((ids.length - rows - 1) / rows));
    // The last stage's rows came through a's inbox: at least a full step's scored forms (C rows of 67 floats), far
    // less than C whole rows.
    expect(largest).toBeGreaterThanOrEqual(rows * SCORED_ROW_LENGTH * 4);
    expect(largest).toBeLessThan((rows * vocab * 4) / 4);
  });
});
