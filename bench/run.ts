/**
 * npm run bench: stage building, the reference runner and the swarm, printed
 * as tables of medians measured side by side in one run. Not part of npm test.
 *
 *   BENCH_MODEL (default austen-2m), BENCH_TOKENS (default 64), BENCH_REPEATS (default 5),
 *   BENCH_SWARM (default 1; 0 skips the swarm rows, which need a built web app and Chromium),
 *   BENCH_GRAPH (auto, plain or fused: the stage graphs' form of the swarm rows (swarm, redundancy, distribution, data path,
 *   hop floor) and their reference runner; default auto, npm start's GRAPH: fused where the model has that form),
 *   BENCH_GRAPHS (default 1; 0 skips plain vs fused graphs and context growth, and context growth with the KV cache on slabs vs
 *   as before on austen-2m and the SmolLM-135M-shaped checkpoint, 30 layers; BENCH_SWARM=0 keeps them out of Chromium),
 *   BENCH_WEBGPU (default 1; 0 skips the WebGPU tab rows: SwiftShader without a GPU, slow),
 *   BENCH_ATTACKS (default 1; 0 skips the attacks on a real server),
 *   BENCH_REPARTITION (default 1; 0 skips the live re-partition: departure to serving again, requests lost),
 *   BENCH_CAPACITY (default 1; 0 skips the coordinator capacity table, 1 000 to 10 000 simulated volunteers),
 *   BENCH_SOAK_S (default 600; 0 skips the soak), BENCH_SOAK_RATE (default 1 request a second),
 *   BENCH_PRECISION (default 1; 0 skips the weight precisions: f32, f16, q8, q4 on austen-2m and a
 *   SmolLM-135M-shaped random checkpoint generated into .cache/checkpoints/)
 *   BENCH_CAPACITY_CLUSTER (default 1; 0 skips its rows for 3 server processes with Redis, which need redis-server),
 *   BENCH_CLUSTER_BUS (default 1; 0 skips a forwarded step:logits between two server processes through redis-server, the
 *   codec against logits as base64 in JSON, bench/cluster-bus.ts),
 *   BENCH_FLOOD (default 1; 0 skips a client flooding 1 MB events for BENCH_FLOOD_S seconds, default 4, against the
 *   server with and without its byte budget, bench/socket-flood.ts),
 *   BENCH_SOAK_S (default 600; 0 skips the soak), BENCH_SOAK_RATE (default 1 request a second)
 *   BENCH_BATCHING (default 1; 0 skips batching across sessions: 1 vs 8 sessions, on vs off (and fused: slabs vs pasts gathered),
 *   austen-2m, a 6-layer SmolLM-135M-shaped random checkpoint written into .cache/bench-models/ and the 30-layer one
 *   (fused only); and, unless BENCH_SWARM=0, 1 vs 8 requests
 *   through a swarm of 3 tabs),
 *   BENCH_GPU_BATCHING (default 1; 0 skips batching across sessions on WebGPU, bench/gpu-batching.ts: one Chromium tab, 1 vs 4
 *   vs 8 sessions at once, batching on vs off; SwiftShader without a GPU; also skipped by BENCH_SWARM=0 or BENCH_WEBGPU=0),
 *   BENCH_WEBGPU_BUILDS (default 1; 0 skips onnxruntime-web's JSPI and asyncify WebGPU builds side by side in one Chromium
 *   tab, bench/webgpu-builds.ts: page open to ready, decode ms/token; also skipped by BENCH_SWARM=0 or BENCH_WEBGPU=0),
 *   BENCH_COLD_START (default 1; 0 skips the volunteer cold start: bytes per stage and page open to ready, which needs Chromium
 *   and writes a 215 MB SmolLM-135M-shaped checkpoint under .cache/), BENCH_COLD_REPEATS (default 3)
 *   BENCH_DISTRIBUTION (default 1; 0 skips the SmolLM-135M-shaped checkpoint through the stage builder, the reference
 *   runner, one tab and 3 tabs × r = 1: Chromium, the same checkpoint as the cold start's),
 *   BENCH_DIST_TOKENS (default 24), BENCH_DIST_REPEATS (default 5: the one tab and the swarm timed in turn, 5 pairs),
 *   BENCH_SCORING (default 1; 0 skips scoring a prompt through the swarm (echo), bench/scoring.ts: its tokens sent to stage 0
 *   step by step vs MESH_AHEAD steps ahead, r = 1 and r = 3, against the reference runner a token at a time),
 *   BENCH_DATAPATH (default 1; 0 skips the volunteer data path on the main thread vs in the compute worker, bench/datapath.ts),
 *   BENCH_STAGE_FILES (default 1; 0 skips stage files built and read on the main thread vs in a worker thread, and a chat
 *   template's cost a message, bench/stage-files.ts),
 *   BENCH_SERVER_COSTS (default 1; 0 skips the service figures counted vs sorted and a whole answer written in pieces vs at
 *   once, on the event loop, bench/server-costs.ts),
 *   BENCH_TEXT_STREAM (default 1; 0 skips the coordinator's text stream, windowed vs every id decoded, bench/text-stream.ts),
 *   BENCH_FALLBACK_LOOP (default 1; 0 skips how long the fallback holds the server's event loop, its runners in their thread vs
 *   on the main thread, bench/fallback-loop.ts; BENCH_FALLBACK_GRAPHS: plain, fused, or both, the default),
 *   BENCH_HOP_FLOOR (default 1; 0 skips the floor under a distributed token, bench/hop-floor.ts: raw data-channel, MessageChannel
 *   and Socket.IO round trips between Chromium tabs, with and without the background throttling flags, then both #11 targets
 *   against it in one run: austen-2m's and the SmolLM-135M-shaped model's token leg by leg, and the latter's distribution cost), BENCH_HOP_ROUND_TRIPS
 *   (default 1000),
 *   BENCH_REDUNDANCY (default 1; 0 skips where r = 3's CPU goes: r = 1 vs r = 3 by process kind and messages per token,
 *   bench/redundancy.ts; on austen-2m, then on the SmolLM-135M-shaped checkpoint, where a stage's compute outweighs its
 *   messages, 2 runs × 16 tokens per setup: BENCH_REDUNDANCY_SMOLLM=0 skips that one),
 *   BENCH_LAST_HEAD (default 1; 0 skips the LM head on every position vs the last only, bench/last-head.ts: the last stage's
 *   prefill and the time to the first token at prompts of 16, 128 and 512 tokens on a SmolLM-135M-shaped checkpoint with its
 *   49 152-token vocabulary, 2 layers, written under .cache/bench-models/),
 *   BENCH_VOTE_COST (default 1; 0 skips the coordinator's vote on a step's logits and sampling a token, before vs now,
 *   bench/vote-cost.ts, and a token greedy and sampled at a 49 152-token vocabulary, bench/sampled-token.ts)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { StageExecutor } from '../shared/model/pipeline.js';
import { PipelineSession } from '../shared/model/pipeline.js';
import { argmax } from '../shared/model/sampling.js';
import { Tokenizer } from '../shared/model/tokenizer.js';
import { DEFAULT_MODEL, modelDir } from '../signal-server/defaults.js';
import { buildStagesToDir, loadStageSet, readModelFolder } from '../signal-server/models/model-folder.js';
import { OrtExecutor } from '../signal-server/reference/ort-executor.js';
import { ensureRandomCheckpoint, SMOLLM_135M_SHAPE } from '../testing/random-checkpoint.js';
import { benchAttacks } from './attacks.js';
import { benchBatching, CASES, smollmSixLayers } from './batching.js';
import { benchBatchingSwarm } from './batching-swarm.js';
import { benchCapacity } from './capacity.js';
import { benchClusterBus } from './cluster-bus.js';
import { benchColdStart } from './cold-start.js';
import { benchContextGrowth } from './context-growth.js';
import { benchDataPath } from './datapath.js';
import { benchDistribution, SMOLLM_SHAPED_DIR, SMOLLM_SHAPED_SEED } from './distribution.js';
import { benchFallbackLoop } from './fallback-loop.js';
import { benchFaults } from './faults.js';
import { benchGpuBatching } from './gpu-batching.js';
import { benchGraphs } from './graphs.js';
import { benchHopFloor } from './hop-floor.js';
import { benchLastHead } from './last-head.js';
import { benchPrecision, smollmShapedCheckpoint } from './precision.js';
import { benchRedundancy } from './redundancy.js';
import { benchRepartition } from './repartition.js';
import { benchSampledToken } from './sampled-token.js';
import { benchScoring } from './scoring.js';
import { benchServerCosts } from './server-costs.js';
import { benchSoak } from './soak.js';
import { benchSocketFlood } from './socket-flood.js';
import { benchStageFiles } from './stage-files.js';
import { benchSwarm } from './swarm.js';
import { median, printTable } from './table.js';
import { benchTextStream } from './text-stream.js';
import { benchSampling, benchTopForms, benchVoteCost } from './vote-cost.js';
import { benchWebgpuBuilds } from './webgpu-builds.js';

const model = process.env.BENCH_MODEL ?? DEFAULT_MODEL;
const tokens = Number(process.env.BENCH_TOKENS ?? 64);
const repeats = Number(process.env.BENCH_REPEATS ?? 5);
const PROMPT = 'It is a truth universally acknowledged, that a single man in possession of a good fortune';
const WARMUP_TOKENS = 128;

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'webswarm-bench-'));
  try {
    const folder = readModelFolder(modelDir(model));
    const buildRows: string[][] = [];
    const decodeRows: string[][] = [];
    for (const stages of [1, 3, folder.config.numLayers]) {
      const builds: number[] = [];
      for (let i = 0; i < repeats; i++) {
        const t0 = performance.now();
        await buildStagesToDir(folder, { stages }, join(work, `s${stages}`));
        builds.push(performance.now() - t0);
      }
      const set = await loadStageSet(join(work, `s${stages}`));
      const sizeMb = set.stageBytes.reduce((a, b) => a + b.byteLength, 0) / 1e6;
      buildRows.push([String(stages), sizeMb.toFixed(2), median(builds).toFixed(1)]);

      const ort = await OrtExecutor.create(set.stageBytes, 1);
      const perStage: number[][] = set.manifest.stages.map(() => []);
      let timing = false;
      const timed: StageExecutor = {
        async run(stage, feeds) {
          const t0 = performance.now();
          const out = await ort.run(stage, feeds);
          if (timing) perStage[stage]?.push(performance.now() - t0);
          return out;
        },
      };
      const promptIds = Tokenizer.fromJson('tokenizer.json', set.tokenizerJson, set.tokenizerConfigJson).encode(PROMPT);
      const totals: number[] = [];
      // Warm up: WASM tiers up over the first ~100 tokens.
      for (let r = -1; r < repeats; r++) {
        const session = new PipelineSession(set.manifest, timed);
        let logits = await session.forward(promptIds);
        let next = argmax(logits.subarray(logits.length - set.manifest.model.vocabSize));
        const n = r < 0 ? WARMUP_TOKENS : tokens;
        timing = r >= 0;
        const t0 = performance.now();
        for (let i = 0; i < n; i++) {
          logits = await session.forward([next]);
          next = argmax(logits);
        }
        if (r >= 0) totals.push((performance.now() - t0) / n);
        timing = false;
      }
      await ort.release();
      const stageMs = perStage.map((xs) => median(xs).toFixed(3)).join(' / ');
      const tok = median(totals);
      decodeRows.push([String(stages), stageMs, tok.toFixed(3), (1000 / tok).toFixed(0)]);
    }
    printTable(`stage build of ${model} (median of ${repeats})`, ['stages', 'MB', 'build ms'], buildRows);
    printTable(
      `reference runner decode, onnxruntime-web WASM in Node, 1 thread (median of ${repeats} runs × ${tokens} tokens, after ${WARMUP_TOKENS} warm-up tokens)`,
      ['stages', 'ms per token per stage', 'ms/token', 'tokens/s'],
      decodeRows,
    );
    if (process.env.BENCH_GRAPHS !== '0') {
      const browser = process.env.BENCH_SWARM !== '0';
      await benchGraphs({ modelDir: modelDir(model), stages: 3, repeats, browser, webgpu: browser && process.env.BENCH_WEBGPU !== '0' });
      const smollm = { label: 'SmolLM-135M-shaped', dir: ensureRandomCheckpoint(SMOLLM_SHAPED_DIR, SMOLLM_135M_SHAPE, SMOLLM_SHAPED_SEED) };
      await benchContextGrowth({ models: [{ label: model, dir: modelDir(model) }, smollm], stages: 3, repeats: Math.min(repeats, 3) });
    }
    if (process.env.BENCH_BATCHING !== '0') {
      const models = [
        { label: model, dir: modelDir(model) },
        { label: 'SmolLM-135M-shaped, 6 layers', dir: smollmSixLayers() },
        {
          label: 'SmolLM-135M-shaped, 30 layers',
          dir: ensureRandomCheckpoint(SMOLLM_SHAPED_DIR, SMOLLM_135M_SHAPE, SMOLLM_SHAPED_SEED),
          cases: CASES.filter((c) => c.graph === 'fused'),
        },
      ];
      await benchBatching({ models, stages: 3, tokens, repeats });
    }
    if (process.env.BENCH_LAST_HEAD !== '0') await benchLastHead({ repeats: Math.min(repeats, 3) });
    if (process.env.BENCH_TEXT_STREAM !== '0') benchTextStream({ repeats });
    if (process.env.BENCH_FALLBACK_LOOP !== '0') await benchFallbackLoop({ repeats });
    if (process.env.BENCH_STAGE_FILES !== '0') await benchStageFiles({ repeats });
    if (process.env.BENCH_SERVER_COSTS !== '0') await benchServerCosts({ repeats });
    if (process.env.BENCH_VOTE_COST !== '0') {
      benchVoteCost({ repeats: Math.max(repeats, 15) });
      benchSampling({ repeats: Math.max(repeats, 15) });
      benchTopForms({ repeats: Math.max(repeats, 15) });
      await benchSampledToken({ tokens: 32, repeats: 3 });
    }
    await benchFaults({ modelDir: modelDir(model), stages: 3, tokens, repeats });
    if (process.env.BENCH_PRECISION !== '0') {
      const models = [
        { label: model, dir: modelDir(model) },
        { label: 'a SmolLM-135M-shaped random checkpoint', dir: smollmShapedCheckpoint() },
      ];
      await benchPrecision({ models, stages: 3, tokens, repeats: Math.min(repeats, 3) });
    }
    if (process.env.BENCH_CAPACITY !== '0') await benchCapacity();
    if (process.env.BENCH_CLUSTER_BUS !== '0') await benchClusterBus({ messages: 300, repeats: Math.min(repeats, 3) });
    if (process.env.BENCH_FLOOD !== '0')
      await benchSocketFlood({ seconds: Number(process.env.BENCH_FLOOD_S ?? 4), repeats: Math.min(repeats, 3) });
    const soakS = Number(process.env.BENCH_SOAK_S ?? 600);
    if (soakS > 0) await benchSoak({ modelDir: modelDir(model), seconds: soakS, ratePerS: Number(process.env.BENCH_SOAK_RATE ?? 1) });
    if (process.env.BENCH_ATTACKS !== '0') await benchAttacks({ modelDir: modelDir(model), tokens: Math.min(tokens, 32), requests: 6 });
    if (process.env.BENCH_REPARTITION !== '0')
      await benchRepartition({ modelDir: modelDir(model), tokens: Math.min(tokens, 32), repeats: Math.min(repeats, 3) });
    if (process.env.BENCH_COLD_START !== '0') {
      await benchColdStart({ defaultModelDir: modelDir(model), repeats: Number(process.env.BENCH_COLD_REPEATS ?? 3) });
    }
    if (process.env.BENCH_SWARM !== '0') await benchSwarm({ modelDir: modelDir(model), stages: 3, tokens, repeats });
    if (process.env.BENCH_SWARM !== '0' && process.env.BENCH_REDUNDANCY !== '0')
      await benchRedundancy({ modelDir: modelDir(model), stages: 3, tokens: Math.min(tokens, 48), repeats: Math.min(repeats, 3) });
    if (process.env.BENCH_SWARM !== '0' && process.env.BENCH_REDUNDANCY !== '0' && process.env.BENCH_REDUNDANCY_SMOLLM !== '0') {
      const dir = ensureRandomCheckpoint(SMOLLM_SHAPED_DIR, SMOLLM_135M_SHAPE, SMOLLM_SHAPED_SEED);
      await benchRedundancy({ modelDir: dir, stages: 3, tokens: 16, repeats: 2 });
    }
    if (process.env.BENCH_SWARM !== '0' && process.env.BENCH_SCORING !== '0')
      await benchScoring({ modelDir: modelDir(model), repeats: Math.min(repeats, 3) });
    if (process.env.BENCH_SWARM !== '0' && process.env.BENCH_DATAPATH !== '0')
      await benchDataPath({ modelDir: modelDir(model), stages: 3, tokens, repeats });
    if (process.env.BENCH_SWARM !== '0' && process.env.BENCH_DISTRIBUTION !== '0') {
      await benchDistribution({
        stages: 3,
        tokens: Number(process.env.BENCH_DIST_TOKENS ?? 24),
        repeats: Number(process.env.BENCH_DIST_REPEATS ?? 5),
        warmup: 16,
      });
    }
    if (process.env.BENCH_SWARM !== '0' && process.env.BENCH_HOP_FLOOR !== '0') {
      await benchHopFloor({
        roundTrips: Number(process.env.BENCH_HOP_ROUND_TRIPS ?? 1000),
        tokens,
        repeats: Math.min(repeats, 3),
        distTokens: Number(process.env.BENCH_DIST_TOKENS ?? 24),
        distRepeats: Number(process.env.BENCH_DIST_REPEATS ?? 5),
      });
    }
    if (process.env.BENCH_SWARM !== '0' && process.env.BENCH_BATCHING !== '0') {
      await benchBatchingSwarm({ modelDir: modelDir(model), stages: 3, tokens: Math.min(tokens, 32), repeats: Math.min(repeats, 3) });
    }
    if (process.env.BENCH_SWARM !== '0' && process.env.BENCH_WEBGPU !== '0' && process.env.BENCH_GPU_BATCHING !== '0') {
      await benchGpuBatching({
        modelDir: modelDir(model),
        stages: 3,
        tokens: Math.min(tokens, 16),
        repeats: Math.min(repeats, 3),
        concurrency: [4, 8],
      });
    }
    if (process.env.BENCH_SWARM !== '0' && process.env.BENCH_WEBGPU !== '0' && process.env.BENCH_WEBGPU_BUILDS !== '0') {
      await benchWebgpuBuilds({ modelDir: modelDir(model), stages: 3, tokens: Math.min(tokens, 12), repeats: Math.min(repeats, 3) });
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench failed: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(1);
});
