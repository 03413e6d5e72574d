/**
 * npm run bench:gpu: a model's stages in Node through onnxruntime-node's
 * WebGPU execution provider (the kernels of a WebGPU volunteer's
 * onnxruntime-web), with exactly the session options the volunteer's worker
 * uses (stageSessionOptions: the KV cache stays on the GPU), both graph
 * forms, and onnxruntime-node's CPU provider side by side.
 *
 * onnxruntime-node and webgpu (Dawn for Node, to name the adapter) live in
 * bench/gpu/node_modules, installed by this script only: nobody else pays for them.
 *
 *   BENCH_GPU_MODEL    a Hugging Face model folder (default: a seeded random
 *                      SmolLM-135M-shaped checkpoint, written into .cache/bench-models)
 *   BENCH_GPU_STAGES   stages to cut it into (default 3)
 *   BENCH_GPU_WEIGHTS  the stages' weight precision (f32, the default; f16, q8, q4:
 *                      q8 and q4 run their MatMuls as onnxruntime's MatMulNBits)
 *   BENCH_GPU_TOKENS   decode tokens timed per row (default 32; 3 on SwiftShader)
 *   BENCH_GPU_ROUNDS   rounds of rows, the forms in turn, the quickest kept (default 3; SwiftShader rows once)
 *   BENCH_GPU_SWIFTSHADER  auto (default): without a GPU adapter, run the WebGPU rows
 *                      on Chromium's SwiftShader Vulkan driver when it is there
 *                      (correctness, not speed); off: never
 *   BENCH_GPU_BATCH    sessions decoded as one batch beside each row's one
 *                      (default 8; 0 or 1: no batching rows; 0 on SwiftShader)
 *   BENCH_GPU_BUDGET_S seconds for all rows (default: no bound): the first round
 *                      always runs whole; a later round's row starts only where
 *                      the slowest row so far still fits (a lent GPU's minutes)
 *   BENCH_GPU_ROW_TIMEOUT_S  a row's child is killed after this (default 3600)
 *   BENCH_GPU_ROWS     only these rows, e.g. `webgpu:fused,web:fused` (default: all)
 *   BENCH_GPU_WEBGPU   auto (default): WebGPU rows where Dawn's Node binding names an
 *                      adapter; on: run them anyway (onnxruntime-node links its own Dawn)
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import type * as Ort from 'onnxruntime-web';
import { parseManifest } from '../../shared/model/manifest.js';
import { CachingExecutor, type DeviceTensor, type KvFeeds, type KvStageExecutor } from '../../shared/model/pipeline.js';
import { fromRuntime } from '../../shared/model/runtime-tensors.js';
import { stageFeeds, stageFetches, stageGraphFor, stageSessionOptions } from '../../shared/model/session-options.js';
import { GRAPH_FORMS, type GraphForm } from '../../shared/model/stage-graph-fused.js';
import { STAGE_CACHE } from '../../signal-server/defaults.js';
import { ensureStages } from '../../signal-server/models/model-folder.js';
import { ensureRandomCheckpoint, SMOLLM_135M_SHAPE } from '../../testing/random-checkpoint.js';

import { median, printTable } from '../table.js';
import { type BatchResult, decodeBatch, greedyForward } from './batch-rows.js';
import { benchWeights } from './common.js';
import { webRuntimeRow } from './web-row.js';

/** The random checkpoint's seed (any fixed one: the figures are of speed, the tokens are compared between rows). */
const SMOLLM_SEED = 135;

const HERE = resolve('bench/gpu');
const require = createRequire(join(HERE, 'package.json'));
/** Chromium's Vulkan driver on the CPU (Debian's chromium package): a WebGPU adapter on a machine without a GPU. */
const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';
const PROMPT_TOKENS = 16;
const WARMUP_TOKENS = 2;

/**
 * onnxruntime-node's CPU and WebGPU providers, and the volunteer's own runtime (onnxruntime-web's WebGPU build,
 * web-row.ts), as the worker runs it today (web) and with graph capture (webcap: web/compute/captured-stages.ts, the
 * fused form only). The worker loads the JSPI build where the engine's WebAssembly has JSPI (Node 25 and later, as
 * Chromium 137 and later) and the asyncify build elsewhere; `-asyncify` rows hide JSPI from the worker's choice, so
 * that a Node with JSPI measures both builds side by side (on a Node without it, web already is the asyncify build).
 */
type Ep = 'cpu' | 'webgpu' | 'web' | 'webcap' | 'web-asyncify' | 'webcap-asyncify';
const EPS: readonly Ep[] = ['cpu', 'webgpu', 'web', 'webcap', 'web-asyncify', 'webcap-asyncify'];

/** A row of the volunteer's own runtime (onnxruntime-web). */
function isWeb(ep: Ep): ep is Exclude<Ep, 'cpu' | 'webgpu'> {
  return ep.startsWith('web') && ep !== 'webgpu';
}

/** A row with graph capture (the fused form only). */
function captures(ep: Ep): boolean {
  return ep.startsWith('webcap');
}

/** A row that runs onnxruntime-web's asyncify build whatever this Node's WebAssembly has. */
function hidesJspi(ep: Ep): boolean {
  return ep.endsWith('-asyncify');
}

/** `build`: the WebGPU build a web row's child loaded (where it has a result). */
function providerName(ep: Ep, swiftshader: boolean, build: string | undefined): string {
  const on = swiftshader ? ' (SwiftShader)' : '';
  if (ep === 'cpu') return 'CPU (onnxruntime-node)';
  if (ep === 'webgpu') return `WebGPU${on} (onnxruntime-node)`;
  return `WebGPU${on} (onnxruntime-web${build === undefined ? '' : ` ${build}`}, ${captures(ep) ? 'graph capture' : "a volunteer's worker"})`;
}

interface RowResult {
  readonly stageMs: number[];
  readonly tokenMs: number;
  /** Null where not measured apart (the volunteer's runtime row). */
  readonly promptMs: number | null;
  /** Nodes onnxruntime placed on the CPU provider / all nodes (WebGPU only). */
  readonly cpuNodes: number | null;
  readonly nodes: number | null;
  readonly tokens: number[];
  /** The onnxruntime-web WebGPU build a web row's child loaded (its worker's choice: ort-web.ts webgpuBuild). */
  readonly build?: string;
  /** BENCH_GPU_BATCH prompts as one batch, and how many rows' tokens equal their prompt's decoded alone. */
  readonly batch:
    | (Omit<BatchResult, 'tokens' | 'promptMs'> & { readonly promptMs: number | null; readonly size: number; readonly rowsAsAlone: number })
    | null;
}

/** The k-th benchmark prompt (k = 0 is the one every row decodes alone and times). */
function prompt(k: number, vocab: number): number[] {
  return Array.from({ length: PROMPT_TOKENS }, (_, i) => (i * 131 + 7 + k * 977) % vocab);
}

/** An onnxruntime-node output left in a GPU buffer. */
class NodeDeviceTensor implements DeviceTensor {
  readonly dtype = 'device';
  readonly dims: readonly number[];
  constructor(readonly tensor: Ort.Tensor) {
    this.dims = tensor.dims;
  }
  async read(): Promise<Float32Array> {
    return (await this.tensor.getData()) as Float32Array;
  }
  dispose(): void {
    this.tensor.dispose();
  }
}

/** One row, in a child process (own memory; the WebGPU environment it was started with). */
async function child(ep: Ep, dir: string, tokens: number, batch: number): Promise<void> {
  if (isWeb(ep)) {
    if (hidesJspi(ep)) {
      // As an engine without JSPI: the worker's choice (ort-web.ts webgpuBuild) then loads the asyncify build.
      const wasm = WebAssembly as { Suspending?: unknown; promising?: unknown };
      delete wasm.Suspending;
      delete wasm.promising;
    }
    return webChild(dir, tokens, batch, captures(ep));
  }
  const ort = require('onnxruntime-node') as typeof Ort;
  const manifest = parseManifest(join(dir, 'manifest.json'), JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')));
  const sessions: Ort.InferenceSession[] = [];
  for (const s of manifest.stages) {
    // The graph a volunteer on this backend loads (WebGPU: without new.*, stageGraphFor).
    const bytes = stageGraphFor(ep, readFileSync(join(dir, s.file)));
    if (ep === 'webgpu') {
      // Where each node runs, from onnxruntime's verbose log (a probe session; the measured ones are below).
      const probe = await ort.InferenceSession.create(bytes, { ...stageSessionOptions(ep, s), logSeverityLevel: 0, logVerbosityLevel: 0 });
      await probe.release();
    }
    // Exactly a volunteer's options.
    sessions.push(await ort.InferenceSession.create(bytes, stageSessionOptions(ep, s)));
  }
  const stageMs: number[][] = manifest.stages.map(() => []);
  let timing = false;
  const executor: KvStageExecutor = {
    async run(stage, feeds, fetches) {
      const inputs: Record<string, Ort.Tensor> = {};
      const session = sessions[stage] as Ort.InferenceSession;
      for (const [k, v] of Object.entries(stageFeeds(session.inputNames, feeds))) {
        inputs[k] = v.dtype === 'device' ? (v as NodeDeviceTensor).tensor : new ort.Tensor(v.dtype, v.data, [...v.dims]);
      }
      const t0 = performance.now();
      const out = await session.run(inputs, stageFetches(session.outputNames, fetches));
      const result: KvFeeds = {};
      for (const [k, v] of Object.entries(out)) {
        result[k] = v.location === 'gpu-buffer' ? new NodeDeviceTensor(v) : fromRuntime(k, v.type, v.dims, v.data);
      }
      if (timing) stageMs[stage]?.push(performance.now() - t0);
      return result;
    },
  };
  const caches = new CachingExecutor(manifest, executor);
  const vocab = manifest.model.vocabSize;
  const forward = greedyForward(manifest, caches);
  /** A prompt and WARMUP_TOKENS + n tokens decoded alone, the last n timed when `timed`; its greedy tokens. */
  const alone = async (session: number, n: number, timed: boolean, tokenMs: number[]): Promise<{ tokens: number[]; promptMs: number }> => {
    const t0 = performance.now();
    let next = await forward(session, prompt(session, vocab));
    const promptMs = performance.now() - t0;
    const out = [next];
    for (let i = 0; i < WARMUP_TOKENS + n; i++) {
      timing = timed && i >= WARMUP_TOKENS;
      const t = performance.now();
      next = await forward(session, [next]);
      if (timing) tokenMs.push(performance.now() - t);
      out.push(next);
    }
    timing = false;
    caches.release(session);
    return { tokens: out, promptMs };
  };
  const tokenMs: number[] = [];
  const { tokens: out, promptMs } = await alone(0, tokens, true, tokenMs);
  let batched: RowResult['batch'] = null;
  if (batch > 1) {
    const prompts = Array.from({ length: batch }, (_, k) => prompt(k, vocab));
    const rows = await decodeBatch(manifest, (stage, feeds) => executor.run(stage, feeds), prompts, tokens, WARMUP_TOKENS);
    let rowsAsAlone = 0;
    for (const [k, row] of rows.tokens.entries()) {
      const own = k === 0 ? out : (await alone(k, tokens, false, [])).tokens;
      if (own.join() === row.join()) rowsAsAlone++;
    }
    batched = { size: batch, stepMs: rows.stepMs, promptMs: rows.promptMs, rowsAsAlone };
  }
  const result: RowResult = {
    stageMs: stageMs.map((xs) => median(xs)),
    tokenMs: median(tokenMs),
    promptMs,
    cpuNodes: null,
    nodes: null,
    tokens: out,
    batch: batched,
  };
  process.stdout.write(`\nRESULT ${JSON.stringify(result)}\n`);
}

/** The volunteer's runtime in this process (web-row.ts), reported as a row. */
async function webChild(dir: string, tokens: number, batch: number, capture: boolean): Promise<void> {
  const manifest = parseManifest(join(dir, 'manifest.json'), JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')));
  const stages = manifest.stages.map((s, index) => {
    const b = readFileSync(join(dir, s.file));
    return { index, bytes: b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer };
  });
  const vocab = manifest.model.vocabSize;
  const t0 = performance.now();
  const r = await webRuntimeRow(manifest, stages, (k) => prompt(k, vocab), tokens, WARMUP_TOKENS, batch, capture);
  const result: RowResult = {
    build: (await import('../../web/compute/ort-build.js')).webgpuBuild(),
    stageMs: [],
    tokenMs: r.tokenMs,
    promptMs: null,
    cpuNodes: null,
    nodes: null,
    tokens: r.tokens,
    batch: r.batch === null ? null : { size: r.batch.size, stepMs: r.batch.stepMs, promptMs: null, rowsAsAlone: r.batch.rowsAsAlone },
  };
  process.stderr.write(
    `web row: ${((performance.now() - t0) / 1000).toFixed(1)} s; batched steps ${r.batch?.batchedSteps ?? 0} of ${r.batch?.steps ?? 0}\n`,
  );
  process.stdout.write(`\nRESULT ${JSON.stringify(result)}\n`);
  process.exit(0);
}

/** Counts, from onnxruntime's verbose log, the nodes placed on the CPU provider and all nodes. */
function placement(log: string): { cpuNodes: number; nodes: number } {
  let cpuNodes = 0;
  let nodes = 0;
  for (const m of log.matchAll(/(All nodes|Node\(s\)) placed on \[(\w+)\]\. Number of nodes: (\d+)/g)) {
    const n = Number(m[3]);
    nodes += n;
    if (m[2] === 'CPUExecutionProvider') cpuNodes += n;
  }
  return { cpuNodes, nodes };
}

/** The arguments that run this script again in a child: Node's own (tsx's loader) and its path (run.ts, or a bundle of it: device.sh). */
function self(): string[] {
  return [...process.execArgv, process.argv[1] as string];
}

/** The adapter Dawn's Node binding names, or null with why (its child's last words). */
function adapterIn(env: NodeJS.ProcessEnv): { name: string | null; why: string } {
  const r = spawnSync(process.execPath, [...self(), '--adapter'], { env, encoding: 'utf8', timeout: 60_000 });
  const line = r.stdout.split('\n').find((l) => l.startsWith('ADAPTER '));
  if (line !== undefined && line !== 'ADAPTER null') {
    const features = r.stdout.split('\n').find((l) => l.startsWith('FEATURES '));
    if (features !== undefined) process.stdout.write(`adapter features: ${features.slice('FEATURES '.length)}\n`);
    return { name: line.slice('ADAPTER '.length), why: '' };
  }
  const said = `${r.stdout}\n${r.stderr}`.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('ADAPTER '));
  return {
    name: null,
    why:
      line === undefined
        ? `probe exit ${r.status}: ${said.slice(-3).join(' / ')}`
        : `requestAdapter gave null ${said.slice(-3).join(' / ')}`,
  };
}

async function adapterChild(): Promise<void> {
  const { create, globals } = require('webgpu') as { create: (o: string[]) => GPU; globals: object };
  Object.assign(globalThis, globals);
  const adapter = await create([]).requestAdapter();
  const i = adapter?.info;
  const name = i === undefined ? null : [i.vendor, i.architecture, i.device, i.description].filter((s) => s !== '').join(' ');
  process.stdout.write(`ADAPTER ${name ?? 'null'}\n`);
  if (adapter !== null) {
    // What later graph forms would need of it: shader-f16 (f16 activations), subgroups (onnxruntime's flash attention).
    const l = adapter.limits;
    process.stdout.write(
      `FEATURES ${[...adapter.features].sort().join(' ')}; maxStorageBufferBindingSize ${l.maxStorageBufferBindingSize}, maxBufferSize ${l.maxBufferSize}, maxComputeWorkgroupStorageSize ${l.maxComputeWorkgroupStorageSize}\n`,
    );
  }
  process.exit(0);
}

/** BENCH_GPU_ROWS: the rows to run, as `provider:graph` separated by commas (EPS; plain, fused); null: all. */
function rowFilter(raw: string | undefined): Set<string> | null {
  if (raw === undefined || raw.trim() === '') return null;
  const rows = new Set(raw.split(',').map((r) => r.trim()));
  for (const r of rows) {
    const [ep, graph] = r.split(':');
    if (!EPS.includes(ep as Ep) || !GRAPH_FORMS.includes(graph as GraphForm))
      throw new RangeError(`BENCH_GPU_ROWS: ${JSON.stringify(r)} is not provider:graph (${EPS.join(', ')}; ${GRAPH_FORMS.join(' or ')})`);
    if (captures(ep as Ep) && graph !== 'fused')
      throw new RangeError(`BENCH_GPU_ROWS: ${JSON.stringify(r)}: graph capture runs the fused form only`);
  }
  return rows;
}

/** A positive number of seconds from the environment, or `fallback` where unset. */
function seconds(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new RangeError(`${name} must be a positive number of seconds, not ${JSON.stringify(raw)}`);
  return n;
}

function runRow(ep: Ep, dir: string, tokens: number, batch: number, env: NodeJS.ProcessEnv, timeoutS: number): RowResult | string {
  const r = spawnSync(process.execPath, [...self(), '--row', ep, dir, String(tokens), String(batch)], {
    env,
    encoding: 'utf8',
    maxBuffer: 1 << 30,
    timeout: timeoutS * 1000,
  });
  const log = `${r.stdout}\n${r.stderr}`;
  const line = r.stdout.split('\n').find((l) => l.startsWith('RESULT '));
  if (line === undefined) {
    const why = r.error !== undefined && r.signal !== null ? `killed after ${timeoutS} s` : `exit ${r.status}`;
    // The error's own words, not the stack frames under it.
    const said = r.stderr.split('\n').filter((l) => l.trim() !== '' && !/^\s+at /.test(l));
    return `failed (${why}): ${said.slice(-3).join(' / ')}`;
  }
  const row = JSON.parse(line.slice('RESULT '.length)) as RowResult;
  return ep === 'webgpu' ? { ...row, ...placement(log) } : row;
}

async function main(): Promise<void> {
  if (!existsSync(join(HERE, 'node_modules/onnxruntime-node'))) {
    throw new Error('onnxruntime-node is not installed in bench/gpu: run npm run bench:gpu (it installs it there)');
  }
  const modelDir =
    process.env.BENCH_GPU_MODEL ?? ensureRandomCheckpoint('.cache/bench-models/smollm-135m-random', SMOLLM_135M_SHAPE, SMOLLM_SEED);
  const stages = Number(process.env.BENCH_GPU_STAGES ?? 3);
  const weights = benchWeights();
  const dirs = new Map<GraphForm, string>();
  for (const graph of GRAPH_FORMS) dirs.set(graph, (await ensureStages(modelDir, { stages }, STAGE_CACHE, { graph, weights })).dir);

  let gpuEnv: NodeJS.ProcessEnv = process.env;
  const probe = adapterIn(gpuEnv);
  let adapter = probe.name;
  let swiftshader = false;
  const forced = process.env.BENCH_GPU_WEBGPU === 'on';
  if (process.env.BENCH_GPU_WEBGPU !== undefined && !['on', 'auto'].includes(process.env.BENCH_GPU_WEBGPU))
    throw new RangeError(`BENCH_GPU_WEBGPU must be auto or on, not ${JSON.stringify(process.env.BENCH_GPU_WEBGPU)}`);
  if (adapter === null && !forced && process.env.BENCH_GPU_SWIFTSHADER !== 'off' && existsSync(SWIFTSHADER_ICD)) {
    gpuEnv = { ...process.env, VK_ICD_FILENAMES: SWIFTSHADER_ICD, LD_LIBRARY_PATH: '/usr/lib/chromium' };
    adapter = adapterIn(gpuEnv).name;
    swiftshader = adapter !== null;
  }
  if (probe.name === null) process.stdout.write(`Dawn's Node binding named no adapter (${probe.why})\n`);
  if (adapter === null && forced) adapter = "not named (BENCH_GPU_WEBGPU=on: onnxruntime-node's own Dawn is tried)";
  process.stdout.write(
    adapter === null
      ? 'WebGPU: no adapter on this machine (onnxruntime-node has its WebGPU provider, Dawn found no GPU): CPU rows only\n'
      : `WebGPU adapter: ${adapter}${swiftshader ? " — Chromium's SwiftShader Vulkan driver on the CPU, not a GPU: right numbers, not a GPU's speed" : ''}\n`,
  );
  const tokens = Number(process.env.BENCH_GPU_TOKENS ?? (swiftshader ? 3 : 32));
  const rounds = Number(process.env.BENCH_GPU_ROUNDS ?? 3);
  const batch = Number(process.env.BENCH_GPU_BATCH ?? (swiftshader ? 0 : 8));
  if (!Number.isInteger(batch) || batch < 0 || batch > 64)
    throw new RangeError(`BENCH_GPU_BATCH must be an integer in 0..64, not ${batch}`);
  // SwiftShader is minutes a row: once.
  const gpuRounds = swiftshader ? 1 : rounds;
  const budgetS = seconds('BENCH_GPU_BUDGET_S', Number.POSITIVE_INFINITY);
  const rowTimeoutS = seconds('BENCH_GPU_ROW_TIMEOUT_S', 3600);
  const started = performance.now();
  let slowestRowS = 0;
  let skipped = 0;
  const rows: string[][] = [];
  const answers = new Map<string, number[]>();
  const eps: Ep[] = adapter === null ? ['cpu'] : [...EPS];
  // The WebGPU build the worker's choice loads in this Node (the web rows run in children of the same Node).
  const build = (await import('../../web/compute/ort-build.js')).webgpuBuild();
  process.stdout.write(`node ${process.version}: onnxruntime-web's WebGPU rows load its ${build} build\n`);
  const only = rowFilter(process.env.BENCH_GPU_ROWS);
  // The forms in turn, several rounds, the quickest kept: other work on the machine only ever adds time.
  const best = new Map<string, RowResult | string>();
  for (let round = 0; round < rounds; round++) {
    for (const ep of eps) {
      if (ep !== 'cpu' && round >= gpuRounds) continue;
      for (const graph of GRAPH_FORMS) {
        if (only !== null && !only.has(`${ep}:${graph}`)) continue;
        if (captures(ep) && graph !== 'fused') continue;
        // Without JSPI in this Node, web is the asyncify build already.
        if (hidesJspi(ep) && build === 'asyncify') {
          if (round === 0)
            process.stdout.write(`${ep} ${graph}: not run, this Node (${process.version}) has no JSPI: web is the asyncify build\n`);
          continue;
        }
        const n = ep === 'cpu' ? Number(process.env.BENCH_GPU_TOKENS ?? 32) : tokens;
        const elapsedS = (performance.now() - started) / 1000;
        if (round > 0 && (elapsedS + slowestRowS > budgetS || typeof best.get(`${ep} ${graph}`) === 'string')) {
          skipped++;
          continue;
        }
        const t0 = performance.now();
        const r = runRow(ep, dirs.get(graph) as string, n, batch, ep === 'cpu' ? process.env : gpuEnv, rowTimeoutS);
        const rowS = (performance.now() - t0) / 1000;
        slowestRowS = Math.max(slowestRowS, rowS);
        // Each row as it ends, so that a run cut short still shows what it measured.
        process.stdout.write(
          `round ${round + 1}, ${ep} ${graph} (${rowS.toFixed(0)} s): ${
            typeof r === 'string'
              ? r
              : `${r.tokenMs.toFixed(1)} ms/token, stages ${r.stageMs.map((x) => x.toFixed(1)).join(' / ') || '—'}${
                  r.batch === null ? '' : `, a step of ${r.batch.size} ${r.batch.stepMs.toFixed(1)} ms`
                }`
          }\n`,
        );
        const key = `${ep} ${graph}`;
        const kept = best.get(key);
        if (kept === undefined || typeof kept === 'string' || (typeof r !== 'string' && r.tokenMs < kept.tokenMs)) best.set(key, r);
      }
    }
  }
  for (const ep of eps) {
    for (const graph of GRAPH_FORMS) {
      const r = best.get(`${ep} ${graph}`);
      if (r === undefined) continue;
      if (typeof r === 'string') {
        rows.push([ep, graph, r, '', '', '', '']);
        continue;
      }
      answers.set(`${ep} ${graph}`, r.tokens);
      rows.push([
        providerName(ep, swiftshader, r.build),
        graph,
        r.stageMs.length === 0 ? '—' : r.stageMs.map((x) => x.toFixed(1)).join(' / '),
        r.tokenMs.toFixed(1),
        r.promptMs === null ? '—' : r.promptMs.toFixed(0),
        r.nodes === null ? '' : `${r.cpuNodes} of ${r.nodes}`,
        String(r.tokens.length),
      ]);
    }
  }
  if (skipped > 0) process.stdout.write(`BENCH_GPU_BUDGET_S=${budgetS}: ${skipped} rows of later rounds not run\n`);
  const model = JSON.parse(readFileSync(join(modelDir, 'config.json'), 'utf8')) as Record<string, number>;
  printTable(
    `${modelDir}: ${model.num_hidden_layers} layers, hidden ${model.hidden_size}, ${stages} stages, ${weights} weights; a volunteer's session options, KV cache on the device; prompt ${PROMPT_TOKENS} tokens; medians over the timed tokens, the quickest of ${rounds} rounds${adapter === null ? '' : ` (WebGPU: ${gpuRounds})`}`,
    ['provider', 'graph', 'ms per stage', 'ms/token', 'prompt ms', 'nodes on CPU', 'tokens'],
    rows,
  );
  const batchRows: string[][] = [];
  for (const ep of eps) {
    for (const graph of GRAPH_FORMS) {
      const r = best.get(`${ep} ${graph}`);
      if (r === undefined || typeof r === 'string' || r.batch === null) continue;
      const b = r.batch;
      batchRows.push([
        providerName(ep, swiftshader, r.build),
        graph,
        r.tokenMs.toFixed(1),
        b.stepMs.toFixed(1),
        `${((b.size * r.tokenMs) / b.stepMs).toFixed(2)}×`,
        `${b.rowsAsAlone} of ${b.size}`,
      ]);
    }
  }
  if (batchRows.length > 0)
    printTable(
      `the same stages, ${batch} prompts decoded as one batch (one call a stage a step, present.* fed back as past.*) beside one prompt alone; each row's greedy tokens against its prompt decoded alone`,
      ['provider', 'graph', 'ms/token alone', `ms a step of ${batch}`, `tokens/s ${batch} ÷ 1`, 'rows = alone'],
      batchRows,
    );
  // Greedy tokens of a random model are a weak oracle, but a broken row shows in them.
  const first = [...answers.values()][0];
  for (const [k, v] of answers) {
    const n = Math.min(v.length, first?.length ?? 0);
    if (first !== undefined && v.slice(0, n).join() !== first.slice(0, n).join())
      process.stdout.write(`note: ${k} gave other greedy tokens\n`);
  }
}

const [flag, ...rest] = process.argv.slice(2);
const run =
  flag === '--row'
    ? child(rest[0] as Ep, rest[1] as string, Number(rest[2]), Number(rest[3]))
    : flag === '--adapter'
      ? adapterChild()
      : main();
run.catch((e: unknown) => {
  process.stderr.write(`bench:gpu failed: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(1);
});
