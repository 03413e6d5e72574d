// CONTEXT: the positions a session may hold, below a model's max_position_embeddings. The setting, what the log says,
// and a real server on port 0 over stages built for fewer positions than the model's: its API's limit is theirs.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULT_CONTEXT } from './defaults.js';
import { contextFor, optionsFrom } from './main.js';
import { type BuildChoice, ensureStages, MIN_CONTEXT, partitionKey } from './models/model-folder.js';
import { createSignalServer } from './server.js';
import { partitionBuilder } from './stage-runners.js';
import { NodeVolunteer } from './testing/node-volunteer.js';

/** A real server on port 0 over `model`'s stages in one, built for `context` positions, in a cache of its own. */
async function serveCut(model: string, choice: BuildChoice) {
  const cache = mkdtempSync(join(tmpdir(), 'webswarm-context-'));
  const { dir, manifest } = await ensureStages(model, { stages: 1 }, cache, choice);
  const server = createSignalServer({
    port: 0,
    host: '127.0.0.1',
    webRoot: null,
    models: [{ dir, manifest, key: partitionKey(manifest.model.numLayers, { stages: 1 }) }],
    redundancy: 1,
    routeWaitMs: 20_000,
    ratePerMinute: 0,
    spotCheckRate: 0,
  });
  const close = async () => {
    await server.close();
    rmSync(cache, { recursive: true, force: true });
  };
  return { cache, dir, manifest, server, close };
}

describe('CONTEXT', () => {
  it('8192 by default, 0 for the model’s own; fewer than a challenge step’s positions, and words, refused by name', () => {
    expect(DEFAULT_CONTEXT).toBe(8192);
    expect(optionsFrom({}).context).toBe(8192);
    expect(optionsFrom({ CONTEXT: '0' }).context).toBe(0);
    expect(optionsFrom({}, { context: '2048' }).context).toBe(2048);
    for (const few of ['1', '3'])
      expect(() => optionsFrom({ CONTEXT: few })).toThrow(
        `CONTEXT must be 0 (the model's own context) or at least ${MIN_CONTEXT} positions (a challenge step's), got "${few}"`,
      );
    expect(optionsFrom({ CONTEXT: String(MIN_CONTEXT) }).context).toBe(MIN_CONTEXT);
    // Past what a number holds exactly: the bound is named (before: "an integer ≥ 0", which it is).
    expect(() => optionsFrom({ CONTEXT: '99999999999999999999' })).toThrow(
      'CONTEXT must be an integer from 0 to 9007199254740991, got "99999999999999999999"',
    );
    expect(() => optionsFrom({ CONTEXT: 'all' })).toThrow('CONTEXT must be an integer ≥ 0, got "all"');
    expect(() => optionsFrom({}, { context: '-5' })).toThrow(/--context must be an integer ≥ 0, got "-5"/);
  });

  it('cuts the model’s positions where it states more, said in the log; leaves them where it states fewer, or for 0', () => {
    const said: string[] = [];
    // austen-2m states 512 positions: the default 8192 leaves them.
    expect(contextFor(8192, 'models/austen-2m', (l) => said.push(l))).toBeUndefined();
    expect(contextFor(0, 'models/austen-2m', (l) => said.push(l))).toBeUndefined();
    expect(contextFor(512, 'models/austen-2m', (l) => said.push(l))).toBeUndefined();
    expect(said).toEqual([]);
    expect(contextFor(128, 'models/austen-2m', (l) => said.push(l))).toBe(128);
    expect(said).toEqual(["CONTEXT: serving 128 of the model's 512 positions (CONTEXT=0 serves them all)"]);
    // More than the model holds, asked for: served as the model's, and said (before, nothing was).
    expect(contextFor(99_999, 'models/austen-2m', (l) => said.push(l))).toBeUndefined();
    expect(said[1]).toBe("CONTEXT: 99999 is more than the model's 512 positions; serving its 512");
    // A folder that cannot be read is the build's to name.
    expect(contextFor(128, '/nonexistent-webswarm-model', () => {})).toBeUndefined();
  });

  it('a server over stages built for 48 positions: the API says 48 and refuses a longer request by OpenAI’s code; new cuts keep the context', async () => {
    const { cache, dir, manifest, server, close } = await serveCut('models/austen-2m', { context: 48 });
    try {
      await server.ready;
      const url = server.address().url;
      const info = (await (await fetch(`${url}/tokenizer_info`)).json()) as { model_max_length: number };
      expect(info.model_max_length).toBe(48);
      const ask = (prompt: number[], max_tokens: number) =>
        fetch(`${url}/v1/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model: manifest.modelId, prompt, max_tokens }),
        });
      const long = await ask(
        Array.from({ length: 40 }, (_, i) => i + 10),
        9,
      );
      const body = (await long.json()) as { error: { code: string; message: string } };
      expect(long.status).toBe(400);
      expect(body.error.code).toBe('context_length_exceeded');
      expect(body.error.message).toContain('maximum context length of 48 tokens');
      // A re-partition builds its cuts for the same context.
      const builder = partitionBuilder({ dir, manifest, modelDir: 'models/austen-2m' }, cache, () => {});
      if (builder === null) throw new Error('no builder');
      const cut = await builder.build([
        { start: 0, end: 3 },
        { start: 3, end: manifest.model.numLayers },
      ]);
      expect(cut.manifest.model.maxPositions).toBe(48);
      expect(cut.key.endsWith('-ctx48')).toBe(true);
      await builder.release?.();
    } finally {
      await close();
    }
  });
});

describe('the shortest context', () => {
  it('MIN_CONTEXT on fused stages: a volunteer answers its challenge step, is ready, and a request that fits is served (before: 2 or 3 were accepted, and GroupQueryAttention refused the 4-position challenge: no volunteer was ever ready)', async () => {
    const { manifest, server, close } = await serveCut('fixtures/models/tiny-gqa-bias', { graph: 'fused', context: MIN_CONTEXT });
    expect(manifest.model.maxPositions).toBe(MIN_CONTEXT);
    let v: NodeVolunteer | null = null;
    try {
      await server.ready;
      const url = server.address().url;
      v = new NodeVolunteer(url, { clientKey: 'shortest-context-volunteer' });
      const res = await fetch(`${url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ prompt: [5, 9, 11], max_tokens: 1, temperature: 0 }),
      });
      expect(res.status).toBe(200);
      expect(v.ready).toBe(true);
    } finally {
      await v?.close();
      await close();
    }
  });
});
