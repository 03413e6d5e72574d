// CONTEXT: the positions a session may hold, below a model's max_position_embeddings. The setting, what the log says,
// and a real server on port 0 over stages built for fewer positions than the model's: its API's limit is theirs.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { contextFor, DEFAULT_CONTEXT, optionsFrom } from './main.js';
import { ensureStages, partitionKey } from './models/model-folder.js';
import { createSignalServer } from './server.js';
import { partitionBuilder } from './stage-runners.js';

describe('CONTEXT', () => {
  it('8192 by default, 0 for the model’s own; 1 and words refused by name', () => {
    expect(DEFAULT_CONTEXT).toBe(8192);
    expect(optionsFrom({}).context).toBe(8192);
    expect(optionsFrom({ CONTEXT: '0' }).context).toBe(0);
    expect(optionsFrom({}, { context: '2048' }).context).toBe(2048);
    expect(() => optionsFrom({ CONTEXT: '1' })).toThrow('CONTEXT must be 0 (the model\'s own context) or at least 2 positions, got "1"');
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
    // A folder that cannot be read is the build's to name.
    expect(contextFor(128, '/nonexistent-webswarm-model', () => {})).toBeUndefined();
  });

  it('a server over stages built for 48 positions: the API says 48 and refuses a longer request by OpenAI’s code; new cuts keep the context', async () => {
    const cache = mkdtempSync(join(tmpdir(), 'webswarm-context-'));
    const { dir, manifest } = await ensureStages('models/austen-2m', { stages: 1 }, cache, { context: 48 });
    const server = createSignalServer({
      port: 0,
      host: '127.0.0.1',
      webRoot: null,
      models: [{ dir, manifest, key: partitionKey(manifest.model.numLayers, { stages: 1 }) }],
      redundancy: 1,
      ratePerMinute: 0,
    });
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
      await server.close();
      rmSync(cache, { recursive: true, force: true });
    }
  });
});
