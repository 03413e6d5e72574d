/**
 * Live re-partition on a real server with real-protocol Node volunteers
 * (testing/node-volunteer.ts): a swarm of 3 stages × r = 2 serves a long
 * seeded request; a volunteer of stage 1 leaves after a few steps, which
 * leaves 5 volunteers: 3 stages no longer serve and the model is cut into 2
 * or 1 (the planner's choice by the measured speeds).
 * Measured: the time from that departure to the first token of a new request
 * (the swarm serves again), whether the running request gave the reference
 * runner's tokens (replayed on the new partition), and requests lost (must be 0).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SamplingParams } from '../shared/model/sampling.js';
import { seededRandom } from '../shared/model/sampling.js';
import type { FallbackMode } from '../signal-server/coordinator/fallback.js';
import { createLogger } from '../signal-server/log.js';
import { ensureStages, partitionKey } from '../signal-server/models/model-folder.js';
import { ReferenceRunner } from '../signal-server/reference/reference-runner.js';
import { createSignalServer } from '../signal-server/server.js';
import { NodeVolunteer } from '../signal-server/testing/node-volunteer.js';
import { median, printTable } from './table.js';

// Short: a replay prefills the prompt and the tokens so far in one frame, and Node volunteers relay frames as
// signalling messages (at most 16 KiB of JSON: about 18 positions of austen-2m); tabs send them over data channels.
const PROMPT = 'It is a truth';
const SEEDED: SamplingParams = { temperature: 1, topK: 0, topP: 1, seed: 7 };
const READY_MS = 120_000;

async function until(what: string, check: () => boolean, ms = READY_MS): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

interface Trial {
  readonly serveAgainMs: number;
  readonly sameTokens: boolean;
  readonly lost: number;
  readonly replays: number;
  readonly partitions: number;
  /** Stages of the partition after it. */
  readonly stagesAfter: number;
}

async function trial(o: { modelDir: string; cache: string; tokens: number; fallback: FallbackMode; reference: number[] }): Promise<Trial> {
  const { dir, manifest } = await ensureStages(o.modelDir, { stages: 3 }, o.cache);
  const server = createSignalServer({
    port: 0,
    host: '127.0.0.1',
    webRoot: null,
    models: [{ dir, manifest, key: partitionKey(manifest.model.numLayers, { stages: 3 }) }],
    redundancy: 2,
    routeWaitMs: 60_000,
    joinTimeoutMs: 20_000,
    stepTimeoutMs: 30_000,
    ratePerMinute: 0,
    apiMaxConcurrent: 0,
    spotCheckRate: 0,
    random: seededRandom(3),
    fallback: o.fallback,
    repartition: { stageCache: o.cache },
    // BENCH_DEBUG=1: the server's log on stderr.
    ...(process.env.BENCH_DEBUG === '1' ? { logger: createLogger('info', process.stderr, 'pretty') } : {}),
  });
  await server.ready;
  const coordinator = server.coordinator;
  if (coordinator === null) throw new Error('no coordinator');
  const url = server.address().url;
  const vs = Array.from(
    { length: 6 },
    (_, i) => new NodeVolunteer(url, { localAddress: `127.0.0.${120 + i}`, clientKey: `bench-repartition-${i}` }),
  );
  try {
    const ready = () => coordinator.volunteers().filter((v) => v.ready).length;
    await until('6 volunteers ready', () => ready() === 6);
    const leaving = vs.find((v) => v.stage === 1) as NodeVolunteer;
    let departed = 0;
    leaving.socket.on('disconnect', () => {
      departed = performance.now();
    });
    leaving.leaveAfter(3);
    let lost = 0;
    let firstToken = 0;
    const running = coordinator.complete({ prompt: PROMPT, maxTokens: o.tokens, sampling: SEEDED }).catch(() => {
      lost += 1;
      return null;
    });
    await until('the departure', () => departed > 0);
    // A new request at the moment of the departure: its first token is when the swarm serves again.
    const probe = coordinator
      .complete({ prompt: PROMPT, maxTokens: 2, sampling: SEEDED }, () => {
        if (firstToken === 0) firstToken = performance.now();
      })
      .catch(() => {
        lost += 1;
        return null;
      });
    const [result] = await Promise.all([running, probe]);
    return {
      serveAgainMs: firstToken === 0 ? Number.NaN : firstToken - departed,
      sameTokens: result !== null && result.tokens.join(',') === o.reference.join(','),
      lost,
      replays: coordinator.replays,
      partitions: coordinator.repartitions,
      stagesAfter: coordinator.modelInfo.stages,
    };
  } finally {
    for (const v of vs) await v.close();
    await server.close();
  }
}

export async function benchRepartition(o: { modelDir: string; tokens: number; repeats: number }): Promise<void> {
  const cache = mkdtempSync(join(tmpdir(), 'webswarm-bench-repartition-'));
  try {
    const { dir } = await ensureStages(o.modelDir, { stages: 3 }, cache);
    const runner = await ReferenceRunner.fromStageDir(dir);
    const reference = (await runner.generateIds(runner.tokenizer.encode(PROMPT), o.tokens, SEEDED)).tokens;
    await runner.close();
    const rows: string[][] = [];
    const load = loadavg()[0] ?? 0;
    for (const fallback of ['off', 'stage'] as FallbackMode[]) {
      const trials: Trial[] = [];
      for (let i = 0; i < o.repeats; i++) trials.push(await trial({ modelDir: o.modelDir, cache, tokens: o.tokens, fallback, reference }));
      rows.push([
        `FALLBACK=${fallback}`,
        String(trials.length),
        median(trials.map((t) => t.serveAgainMs)).toFixed(0),
        `${trials.filter((t) => t.sameTokens).length}/${trials.length}`,
        String(trials.reduce((a, t) => a + t.lost, 0)),
        String(trials.reduce((a, t) => a + t.replays, 0)),
        String(trials.reduce((a, t) => a + t.partitions, 0)),
        trials.map((t) => t.stagesAfter).join(', '),
      ]);
    }
    printTable(
      `Re-partition: 3 stages × r = 2 (6 Node volunteers), one of stage 1 leaves during a ${o.tokens}-token seeded request → fewer stages, as the planner cuts them by measured speeds (load average ${load.toFixed(1)})`,
      [
        'server',
        'runs',
        'departure → first token of a new request, median ms',
        'running request = reference',
        'requests lost',
        'replays',
        're-partitions',
      ],
      rows,
    );
  } finally {
    rmSync(cache, { recursive: true, force: true });
  }
}

// Run alone: node --import tsx bench/repartition.ts
if (process.argv[1]?.endsWith('repartition.ts')) {
  const { DEFAULT_MODEL, modelDir } = await import('../signal-server/defaults.js');
  await benchRepartition({
    modelDir: modelDir(process.env.BENCH_MODEL ?? DEFAULT_MODEL),
    tokens: Number(process.env.BENCH_TOKENS ?? 32),
    repeats: Number(process.env.BENCH_REPEATS ?? 3),
  });
}
