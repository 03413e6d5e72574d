// The server serves each model's Hugging Face folder with range requests and
// CORS, and a tensor index computed at start-up: what volunteers fetch their
// layers with. A real server on port 0; the volunteer's own fetch code in Node.
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseSafetensors } from '../../shared/model/safetensors.js';
import { sha256Hex } from '../../shared/model/sha256.js';
import { buildStageGraph } from '../../shared/model/stage-graph.js';
import { parseTensorIndex, stageTensorNames, type TensorIndex } from '../../shared/model/tensor-index.js';
import { WeightReader } from '../../shared/model/weights.js';
import { goldenModelDir } from '../../testing/golden.js';
import { fetchStageTensors } from '../../web/compute/layer-fetch.js';
import { ensureStages, partitionKey } from '../models/model-folder.js';
import { createSignalServer, type SignalServer } from '../server.js';
import { parseRange } from './static-files.js';

const MODEL = 'tiny-untied';
let cache: string;
let server: SignalServer;
let base: string;
let stageBase: string;
let weightsPath: string;

beforeAll(async () => {
  cache = mkdtempSync(join(tmpdir(), 'webswarm-folder-'));
  const modelDir = goldenModelDir(MODEL);
  weightsPath = join(modelDir, 'model.safetensors');
  const { dir, manifest } = await ensureStages(modelDir, { stages: 2 }, cache);
  const key = partitionKey(manifest.model.numLayers, { stages: 2 });
  server = createSignalServer({ port: 0, host: '127.0.0.1', webRoot: null, models: [{ dir, manifest, key, modelDir }] });
  await server.ready;
  base = server.address().url;
  stageBase = `${base}/models/${MODEL}/${key}`;
});

afterAll(async () => {
  await server?.close();
  rmSync(cache, { recursive: true, force: true });
});

const FILE = () => `${base}/models/${MODEL}/files/model.safetensors`;

describe('the model folder, served with range requests', () => {
  it('answers one byte range with 206, Content-Range and CORS that exposes it', async () => {
    const size = statSync(weightsPath).size;
    const res = await fetch(FILE(), { headers: { range: 'bytes=0-7' } });
    expect(res.status).toBe(206);
    expect(res.headers.get('content-range')).toBe(`bytes 0-7/${size}`);
    expect(res.headers.get('accept-ranges')).toBe('bytes');
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
    expect(res.headers.get('access-control-expose-headers')).toMatch(/Content-Range/);
    expect(new Uint8Array(await res.arrayBuffer())).toEqual(new Uint8Array(readFileSync(weightsPath).subarray(0, 8)));
    const suffix = await fetch(FILE(), { headers: { range: 'bytes=-4' } });
    expect(suffix.status).toBe(206);
    expect(suffix.headers.get('content-range')).toBe(`bytes ${size - 4}-${size - 1}/${size}`);
    expect((await suffix.arrayBuffer()).byteLength).toBe(4);
  });

  it('answers 416 to a range past the end, and the whole file without a range', async () => {
    const size = statSync(weightsPath).size;
    const past = await fetch(FILE(), { headers: { range: `bytes=${size}-` } });
    expect(past.status).toBe(416);
    expect(past.headers.get('content-range')).toBe(`bytes */${size}`);
    await past.arrayBuffer();
    const whole = await fetch(FILE());
    expect(whole.status).toBe(200);
    expect((await whole.arrayBuffer()).byteLength).toBe(size);
    // Several ranges are not served as multipart: the whole file, as RFC 9110 allows.
    const several = await fetch(FILE(), { headers: { range: 'bytes=0-1,4-5' } });
    expect(several.status).toBe(200);
    await several.arrayBuffer();
  });

  it('answers a CORS preflight, and serves only the folder’s own files', async () => {
    const pre = await fetch(FILE(), { method: 'OPTIONS' });
    expect(pre.status).toBe(204);
    expect(pre.headers.get('access-control-allow-headers')).toMatch(/Range/);
    for (const path of ['golden.json', '..%2Fmodel.safetensors', 'model.safetensors%00']) {
      const res = await fetch(`${base}/models/${MODEL}/files/${path}`);
      expect(res.status, path).toBe(404);
      await res.arrayBuffer();
    }
    // Stage files are the server's own (its oracle runs them); volunteers build theirs from the folder.
    const stageFile = await fetch(`${stageBase}/stage-0.onnx`);
    expect(stageFile.status).toBe(404);
    await stageFile.arrayBuffer();
    for (const f of ['config.json', 'tokenizer.json']) {
      const res = await fetch(`${base}/models/${MODEL}/files/${f}`);
      expect(res.status, f).toBe(200);
      await res.arrayBuffer();
    }
  });

  it('publishes each tensor’s sha256 and where the folder is, and a volunteer builds the server’s stages from them', async () => {
    const res = await fetch(`${stageBase}/tensors.json`);
    expect(res.status).toBe(200);
    const index: TensorIndex = parseTensorIndex('tensors.json', await res.json());
    expect(index.weightsUrl).toBe(`/models/${MODEL}/files/`);
    const tensors = parseSafetensors('w', readFileSync(weightsPath));
    expect(index.tensors.map((t) => t.name).sort()).toEqual([...tensors.keys()].sort());
    const embed = tensors.get('model.embed_tokens.weight');
    expect(index.tensors.find((t) => t.name === 'model.embed_tokens.weight')?.sha256).toBe(
      await sha256Hex(embed?.bytes ?? new Uint8Array()),
    );
    const manifest = await (await fetch(`${stageBase}/manifest.json`)).json();
    for (const [i, s] of (manifest.stages as { layers: { start: number; end: number }; sha256: string }[]).entries()) {
      const spec = { index: i, count: manifest.stages.length, layers: s.layers };
      const fetched = await fetchStageTensors({
        index,
        indexUrl: `${stageBase}/tensors.json`,
        names: stageTensorNames(manifest.model, spec),
        store: null,
      });
      const bytes = buildStageGraph(manifest.model, new WeightReader('fetched', fetched.tensors), spec);
      expect(await sha256Hex(bytes), `stage ${i}`).toBe(s.sha256);
    }
  });
});

describe('parseRange', () => {
  it('reads one range, and ignores what it does not serve', () => {
    expect(parseRange('bytes=0-7', 100)).toEqual({ start: 0, end: 7 });
    expect(parseRange('bytes=90-200', 100)).toEqual({ start: 90, end: 99 });
    expect(parseRange('bytes=10-', 100)).toEqual({ start: 10, end: 99 });
    expect(parseRange('bytes=-10', 100)).toEqual({ start: 90, end: 99 });
    expect(parseRange('bytes=-1000', 100)).toEqual({ start: 0, end: 99 });
    expect(parseRange('bytes=100-', 100)).toBe('unsatisfiable');
    expect(parseRange('bytes=-0', 100)).toBe('unsatisfiable');
    expect(parseRange(undefined, 100)).toBeNull();
    expect(parseRange('bytes=5-3', 100)).toBeNull();
    expect(parseRange('bytes=0-1,4-5', 100)).toBeNull();
    expect(parseRange('items=0-1', 100)).toBeNull();
    expect(parseRange('bytes=-', 100)).toBeNull();
  });
});
