// The volunteer's layer fetch, run in Node against a real HTTP server (a
// static folder server on loopback, no mock of fetch): only a stage's tensors
// travel, they build the server's very stage file, a second load takes them
// from the store, and bad input from the server is refused by name.
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildStages } from '../../shared/model/build-stages.js';
import { parseModelConfig } from '../../shared/model/config.js';
import type { StageManifest } from '../../shared/model/manifest.js';
import { parseSafetensors } from '../../shared/model/safetensors.js';
import { sha256Hex } from '../../shared/model/sha256.js';
import { buildStageGraph } from '../../shared/model/stage-graph.js';
import { buildTensorIndex, stageTensorNames, type TensorIndex } from '../../shared/model/tensor-index.js';
import { WeightReader } from '../../shared/model/weights.js';
import { goldenModelDir } from '../../testing/golden.js';
import { type RawTensor, writeSafetensors } from '../../testing/safetensors-writer.js';
import { type StaticFolderOptions, type StaticFolderServer, startStaticFolderServer } from '../../testing/static-folder-server.js';
import { fetchStageTensors, fetchTensorIndex } from './layer-fetch.js';
import { LAYER_FETCH_LIMITS, LayerFetchError, type LayerFetchErrorCode } from './range-fetch.js';
import { memoryStore, type TensorStore } from './tensor-store.js';

const STAGES = 3;

interface Folder {
  readonly dir: string;
  readonly manifest: StageManifest;
  readonly index: TensorIndex;
  readonly fileBytes: number;
}

async function folderOf(
  dir: string,
  weightsFile: 'model.safetensors' | 'model.safetensors.index.json',
  weightBytes: Uint8Array[],
): Promise<Folder> {
  const config = parseModelConfig('config.json', JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')));
  const tensors = new Map(weightBytes.flatMap((b) => [...parseSafetensors('w', b)]));
  const { manifest } = await buildStages({
    modelId: 'm',
    config,
    weightsFile,
    tensors,
    tokenizerJson: readFileSync(join(dir, 'tokenizer.json')),
    tokenizerConfigJson: null,
    partition: { stages: STAGES },
  });
  const index = await buildTensorIndex('m', weightsFile, tensors);
  return { dir, manifest, index, fileBytes: weightBytes.reduce((a, b) => a + b.byteLength, 0) };
}

async function load(f: Folder, server: StaticFolderServer, stage: number, store: TensorStore | null) {
  const entry = f.manifest.stages[stage];
  if (entry === undefined) throw new Error(`no stage ${stage}`);
  const spec = { index: stage, count: f.manifest.stages.length, layers: entry.layers };
  const names = stageTensorNames(f.manifest.model, spec);
  const fetched = await fetchStageTensors({
    index: { ...f.index, weightsUrl: server.url },
    indexUrl: 'http://swarm.invalid/tensors.json',
    names,
    store,
  });
  const bytes = buildStageGraph(f.manifest.model, new WeightReader('fetched', fetched.tensors), spec);
  return { fetched, sha256: await sha256Hex(bytes), expected: entry.sha256 };
}

async function refusal(p: Promise<unknown>): Promise<LayerFetchErrorCode> {
  try {
    await p;
  } catch (e) {
    if (e instanceof LayerFetchError) return e.code;
    throw e;
  }
  throw new Error('expected a refusal');
}

const tmp: string[] = [];
const servers: StaticFolderServer[] = [];
async function serve(dir: string, o?: StaticFolderOptions): Promise<StaticFolderServer> {
  const s = await startStaticFolderServer(dir, o);
  servers.push(s);
  return s;
}
let austen: Folder;

beforeAll(async () => {
  const dir = goldenModelDir('austen-2m');
  austen = await folderOf(dir, 'model.safetensors', [readFileSync(join(dir, 'model.safetensors'))]);
});
afterAll(async () => {
  for (const s of servers) await s.close();
  for (const d of tmp) rmSync(d, { recursive: true, force: true });
});

describe('fetching a stage’s layers by range requests', () => {
  it('builds each stage byte-identical to the server’s, downloading only its tensors', async () => {
    const server = await serve(austen.dir);
    for (let stage = 0; stage < STAGES; stage++) {
      server.reset();
      const r = await load(austen, server, stage, null);
      expect(r.sha256, `stage ${stage}`).toBe(r.expected);
      const tensorBytes = [...r.fetched.tensors.values()].reduce((a, t) => a + t.bytes.byteLength, 0);
      expect(r.fetched.downloadedBytes).toBe(server.bytesSent);
      // The tensors, and the header read with one small probe.
      expect(server.bytesSent).toBeLessThanOrEqual(tensorBytes + LAYER_FETCH_LIMITS.probeBytes);
      expect(server.bytesSent).toBeLessThan(austen.fileBytes * 0.6);
      expect(server.log[0]).toMatch(/^GET model\.safetensors bytes=0-65535$/);
    }
  });

  it('takes every tensor from the store on a second load, with no request at all', async () => {
    const server = await serve(austen.dir);
    const store = memoryStore();
    const first = await load(austen, server, 1, store);
    expect(first.fetched.fromStore).toBe(0);
    expect(store.size).toBe(first.fetched.tensors.size);
    server.reset();
    const again = await load(austen, server, 1, store);
    expect(again.sha256).toBe(again.expected);
    expect(again.fetched.fromStore).toBe(again.fetched.tensors.size);
    expect(again.fetched.downloadedBytes).toBe(0);
    expect(server.log).toEqual([]);
  });

  it('refetches a stored tensor that no longer hashes right', async () => {
    const server = await serve(austen.dir);
    const store = memoryStore();
    await load(austen, server, 2, store);
    const norm = austen.index.tensors.find((t) => t.name === 'model.norm.weight');
    if (norm === undefined) throw new Error('no norm');
    const key = `m/${norm.sha256}`;
    const bytes = (await store.get(key)) as Uint8Array;
    bytes[0] = (bytes[0] as number) ^ 1;
    await store.put(key, bytes);
    server.reset();
    const r = await load(austen, server, 2, store);
    expect(r.sha256).toBe(r.expected);
    expect(r.fetched.fromStore).toBe(r.fetched.tensors.size - 1);
    expect(server.bytesSent).toBeGreaterThan(0);
  });

  it('reads a sharded checkpoint through model.safetensors.index.json', async () => {
    const src = goldenModelDir('tiny-untied');
    const dir = mkdtempSync(join(tmpdir(), 'webswarm-shards-'));
    tmp.push(dir);
    for (const f of ['config.json', 'tokenizer.json']) copyFileSync(join(src, f), join(dir, f));
    const all = parseSafetensors('w', readFileSync(join(src, 'model.safetensors')));
    const shards: Map<string, RawTensor>[] = [new Map(), new Map()];
    const weightMap: Record<string, string> = {};
    let i = 0;
    for (const [name, t] of all) {
      const s = i++ % 2;
      shards[s]?.set(name, t);
      weightMap[name] = `model-0000${s + 1}-of-00002.safetensors`;
    }
    const bytes = shards.map((m) => writeSafetensors(m));
    for (const [s, b] of bytes.entries()) writeFileSync(join(dir, `model-0000${s + 1}-of-00002.safetensors`), b);
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
    const folder = await folderOf(dir, 'model.safetensors.index.json', bytes);
    const server = await serve(dir);
    for (let stage = 0; stage < STAGES; stage++) {
      const r = await load(folder, server, stage, null);
      expect(r.sha256, `stage ${stage}`).toBe(r.expected);
    }
    expect(server.log.some((l) => l.startsWith('GET model.safetensors.index.json'))).toBe(true);
  });
});

describe('bad input from the weights server', () => {
  it('refuses a tampered tensor and keeps nothing of it', async () => {
    // Flip one byte in the middle of the data of every range but the header's probe.
    const server = await serve(austen.dir, {
      tamper: (_file, start, bytes) => {
        if (start > 0) bytes[bytes.byteLength >> 1] = ((bytes[bytes.byteLength >> 1] as number) ^ 0x40) & 0xff;
      },
    });
    const store = memoryStore();
    expect(await refusal(load(austen, server, 1, store))).toBe('ERR_TENSOR_SHA256');
    // What was kept (tensors before the tampered one, if any) is only what hashed right.
    for (const t of austen.index.tensors) {
      const kept = await store.get(`m/${t.sha256}`);
      if (kept !== null) expect(await sha256Hex(kept)).toBe(t.sha256);
    }
  });

  it('refuses a server that ignores Range', async () => {
    const server = await serve(austen.dir, { ignoreRange: true });
    expect(await refusal(load(austen, server, 0, null))).toBe('ERR_WEIGHTS_RANGE');
  });

  it('refuses a body that breaks off mid-range by name (before: a bare TypeError "terminated")', async () => {
    const server = await serve(austen.dir, { breakOffRanges: true });
    expect(await refusal(load(austen, server, 1, null))).toBe('ERR_WEIGHTS_HTTP');
  });

  function hostileFolder(bytes: Uint8Array): string {
    const dir = mkdtempSync(join(tmpdir(), 'webswarm-hostile-'));
    tmp.push(dir);
    writeFileSync(join(dir, 'model.safetensors'), bytes);
    return dir;
  }

  it('refuses a header longer than the bound without reading it', async () => {
    const bytes = new Uint8Array(64);
    new DataView(bytes.buffer).setBigUint64(0, 1n << 40n, true);
    const server = await serve(hostileFolder(bytes));
    expect(await refusal(load(austen, server, 0, null))).toBe('ERR_HEADER_TOO_LARGE');
    expect(server.bytesSent).toBe(64);
  });

  it('refuses a header that puts a tensor outside the file', async () => {
    const real = readFileSync(join(austen.dir, 'model.safetensors'));
    // The real header, and the file cut short: the last tensors' offsets now lie past its end.
    const cut = real.subarray(0, real.byteLength - 1024);
    const server = await serve(hostileFolder(cut));
    const code = await refusal(load(austen, server, 0, null));
    expect(code).toBe('ERR_HEADER_INVALID');
  });

  it('refuses a header whose length does not fit the file, and a header that is not JSON', async () => {
    const short = new Uint8Array(32);
    new DataView(short.buffer).setBigUint64(0, 1000n, true);
    expect(await refusal(load(austen, await serve(hostileFolder(short)), 0, null))).toBe('ERR_HEADER_INVALID');
    const notJson = new Uint8Array(32);
    new DataView(notJson.buffer).setBigUint64(0, 8n, true);
    notJson.set(new TextEncoder().encode('{nope!!}'), 8);
    expect(await refusal(load(austen, await serve(hostileFolder(notJson)), 0, null))).toBe('ERR_HEADER_INVALID');
  });

  it('refuses a checkpoint whose tensor differs in shape from the swarm’s index', async () => {
    const all = parseSafetensors('w', readFileSync(join(austen.dir, 'model.safetensors')));
    const swapped = new Map<string, RawTensor>();
    for (const [name, t] of all) swapped.set(name, name === 'model.norm.weight' ? { ...t, shape: [1, ...t.shape] } : t);
    const server = await serve(hostileFolder(writeSafetensors(swapped)));
    expect(await refusal(load(austen, server, STAGES - 1, null))).toBe('ERR_TENSOR_MISMATCH');
  });

  it('refuses an index over its bound, and a weight map that names files outside the folder', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'webswarm-index-'));
    tmp.push(dir);
    writeFileSync(join(dir, 'tensors.json'), JSON.stringify({ pad: 'x'.repeat(4096) }));
    writeFileSync(
      join(dir, 'model.safetensors.index.json'),
      JSON.stringify({ weight_map: { 'model.norm.weight': '../model.safetensors' } }),
    );
    const server = await serve(dir);
    expect(await refusal(fetchTensorIndex(`${server.url}tensors.json`, { ...LAYER_FETCH_LIMITS, indexBytes: 1024 }))).toBe(
      'ERR_WEIGHTS_INDEX',
    );
    expect(await refusal(fetchTensorIndex(`${server.url}tensors.json`))).toBe('ERR_WEIGHTS_INDEX');
    const sharded = { ...austen, index: { ...austen.index, weightsFile: 'model.safetensors.index.json' as const } };
    expect(await refusal(load(sharded, server, STAGES - 1, null))).toBe('ERR_WEIGHTS_INDEX');
  });

  it('refuses a folder without the checkpoint', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'webswarm-empty-'));
    tmp.push(dir);
    expect(await refusal(load(austen, await serve(dir), 0, null))).toBe('ERR_WEIGHTS_HTTP');
  });
});
