/**
 * How long the server's fallback holds its event loop: a real server with no
 * volunteers (FALLBACK=whole), two requests of a long prompt with n = 2 (four
 * sessions on the server's runner), while the event loop's delay is sampled
 * and /healthz asked every 25 ms. The runners in their thread (the server as
 * it is) against the same runners on the main thread (as before
 * ThreadExecutor), side by side in one run, on austen-2m and the 6-layer
 * SmolLM-135M-shaped checkpoint, plain and fused stage graphs (the fused
 * form's decode steps feed KV slabs, made in memory shared with the thread).
 * Medians over runs.
 *
 *   node --import tsx bench/fallback-loop.ts, or in npm run bench (BENCH_FALLBACK_LOOP=0 skips it)
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { GRAPH_FORMS, type GraphForm } from '../shared/model/stage-graph-fused.js';
import { ensureStages, stageDirName } from '../signal-server/models/model-folder.js';
import { createSignalServer } from '../signal-server/server.js';
import type { RunnerPlace } from '../signal-server/stage-runners.js';
import { smollmSixLayers } from './batching.js';
import { envChoices } from './env.js';
import { median, printTable } from './table.js';

/** The stage graphs' forms (BENCH_FALLBACK_GRAPHS, comma-separated; default both): the fused form's decode steps feed KV slabs. */
const GRAPHS: readonly GraphForm[] = envChoices('BENCH_FALLBACK_GRAPHS', GRAPH_FORMS, GRAPH_FORMS);

/** About 350 of austen-2m's tokens. */
const PROMPT_CHARS = 3150;
const PROBE_MS = 25;

interface Run {
  readonly wallMs: number;
  readonly loopMaxMs: number;
  readonly loopP99Ms: number;
  readonly healthzMaxMs: number;
  readonly promptTokens: number;
}

async function once(url: string, modelId: string, prompt: string): Promise<Run> {
  const post = async (): Promise<number> => {
    const r = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: modelId, prompt, max_tokens: 24, n: 2 }),
    });
    const body = (await r.json()) as { usage?: { prompt_tokens: number } };
    if (r.status !== 200 || body.usage === undefined) throw new Error(`the completion answered ${r.status}: ${JSON.stringify(body)}`);
    return body.usage.prompt_tokens;
  };
  const delay = monitorEventLoopDelay({ resolution: 5 });
  const healthz: number[] = [];
  let probing = true;
  const probe = (async () => {
    while (probing) {
      const t = performance.now();
      await fetch(`${url}/healthz`);
      healthz.push(performance.now() - t);
      await new Promise((r) => setTimeout(r, PROBE_MS));
    }
  })();
  delay.enable();
  const t0 = performance.now();
  const [promptTokens] = await Promise.all([post(), post()]);
  const wallMs = performance.now() - t0;
  delay.disable();
  probing = false;
  await probe;
  return {
    wallMs,
    loopMaxMs: delay.max / 1e6,
    loopP99Ms: delay.percentile(99) / 1e6,
    healthzMaxMs: Math.max(...healthz),
    promptTokens: promptTokens ?? 0,
  };
}

export async function benchFallbackLoop(o: { repeats: number }): Promise<void> {
  const prompt = readFileSync('models/austen-2m/samples.txt', 'utf8').slice(0, PROMPT_CHARS);
  const models = [
    { label: 'austen-2m', dir: 'models/austen-2m' },
    { label: 'SmolLM-135M-shaped, 6 layers', dir: smollmSixLayers() },
  ];
  const cache = mkdtempSync(join(tmpdir(), 'webswarm-fallback-loop-'));
  const rows: string[][] = [];
  try {
    for (const { m, graph } of models.flatMap((m) => GRAPHS.map((graph) => ({ m, graph })))) {
      const { dir, manifest } = await ensureStages(m.dir, { stages: 3 }, cache, { graph });
      const runs = new Map<RunnerPlace, Run[]>([
        ['main', []],
        ['thread', []],
      ]);
      const servers = await Promise.all(
        [...runs.keys()].map(async (runners) => {
          const server = createSignalServer({
            port: 0,
            host: '127.0.0.1',
            webRoot: null,
            models: [{ dir, manifest, key: stageDirName(manifest.model.numLayers, { stages: 3 }, { graph }) }],
            fallback: 'whole',
            routeWaitMs: 300,
            ratePerMinute: 0,
            apiMaxConcurrent: 0,
            stepTimeoutMs: 60_000,
            runners,
          });
          await server.ready;
          return { runners, server, url: server.address().url };
        }),
      );
      try {
        // A warm-up of each (its runner made), then the two interleaved: one server computes at a time.
        for (const s of servers) await once(s.url, manifest.modelId, prompt);
        for (let i = 0; i < o.repeats; i++) for (const s of servers) runs.get(s.runners)?.push(await once(s.url, manifest.modelId, prompt));
      } finally {
        await Promise.all(servers.map((s) => s.server.close()));
      }
      const answeredOnMain = median((runs.get('main') ?? []).map((x) => x.wallMs));
      for (const [runners, r] of runs) {
        const med = (f: (x: Run) => number) => median(r.map(f)).toFixed(1);
        rows.push([
          m.label,
          graph,
          String(r[0]?.promptTokens ?? 0),
          runners === 'thread' ? 'in the runner thread (now)' : 'on the main thread (before)',
          med((x) => x.loopMaxMs),
          med((x) => x.loopP99Ms),
          med((x) => x.healthzMaxMs),
          med((x) => x.wallMs),
          `${(median(r.map((x) => x.wallMs)) / answeredOnMain).toFixed(3)}×`,
        ]);
      }
    }
  } finally {
    rmSync(cache, { recursive: true, force: true });
  }
  printTable(
    `the fallback and the server's event loop: 2 requests × n = 2 at once, no volunteers (FALLBACK=whole, 3 stages), /healthz every ${PROBE_MS} ms; medians of ${o.repeats} runs`,
    [
      'model',
      'graph',
      'prompt tokens',
      'runners',
      'loop held, max ms',
      'loop delay p99 ms',
      '/healthz max ms',
      'both answered, ms',
      '÷ main thread',
    ],
    rows,
  );
}

if (process.argv[1]?.endsWith('fallback-loop.ts')) await benchFallbackLoop({ repeats: 5 });
