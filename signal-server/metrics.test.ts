// /metrics of a real server on port 0, checked by Prometheus's own linter
// (`promtool check metrics`). promtool comes from Debian's prometheus package:
// tools/install-promtool.sh puts it in .cache/tools/bin (npm test runs it first).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureStages, partitionKey } from './models/model-folder.js';
import { createSignalServer, type SignalServer } from './server.js';

const PROMTOOL_TIMEOUT_MS = 20_000;

/** promtool on PATH, or where tools/install-promtool.sh puts it. */
function promtool(): string {
  const cached = resolve('.cache/tools/bin/promtool');
  if (existsSync(cached)) return cached;
  if (spawnSync('promtool', ['--version']).status === 0) return 'promtool';
  throw new Error('promtool not found: run tools/install-promtool.sh (it takes promtool out of Debian’s prometheus package)');
}

function checkMetrics(text: string): { status: number | null; output: string } {
  const r = spawnSync(promtool(), ['check', 'metrics'], { input: text, encoding: 'utf8', timeout: PROMTOOL_TIMEOUT_MS });
  return { status: r.status, output: `${r.stdout}${r.stderr}`.trim() };
}

let cache: string;
let server: SignalServer;

/** A one-stage server of the tiny model, with no volunteers: the fallback's `mode` where given. */
async function startTiny(fallback?: 'stage'): Promise<SignalServer> {
  const { dir, manifest } = await ensureStages('fixtures/models/tiny-untied', { stages: 1 }, cache);
  const s = createSignalServer({
    port: 0,
    host: '127.0.0.1',
    webRoot: null,
    models: [{ dir, manifest, key: partitionKey(3, { stages: 1 }) }],
    redundancy: 1,
    routeWaitMs: 50,
    ratePerMinute: 0,
    apiMaxConcurrent: 0,
    ...(fallback === undefined ? {} : { fallback }),
  });
  await s.ready;
  return s;
}

beforeAll(async () => {
  cache = mkdtempSync(join(tmpdir(), 'webswarm-metrics-'));
  server = await startTiny();
});

afterAll(async () => {
  await server.close();
  rmSync(cache, { recursive: true, force: true });
});

const metrics = async () => (await fetch(`${server.address().url}/metrics`)).text();

describe('/metrics', () => {
  it('passes `promtool check metrics`, with labelled series present', async () => {
    // Requests that give the labelled counters samples: a model list, a bad body, a generation without volunteers.
    const url = server.address().url;
    await fetch(`${url}/v1/models`);
    await fetch(`${url}/v1/completions`, { method: 'POST', body: '{"prompt": 1}' });
    await fetch(`${url}/v1/completions`, { method: 'POST', body: '{"prompt": "Emma", "max_tokens": 2}' });
    const text = await metrics();
    expect(text).toMatch(/^webswarm_generations_total\{outcome="ERR_NO_ROUTE"\} 1$/m);
    expect(text).toMatch(/^webswarm_http_requests_total\{route="\/v1\/models",status="200"\} 1$/m);
    // The coordinator's counts of replays and hand-backs, none yet (their rises: repartition.test.ts, fallback-hand-back.test.ts).
    expect(text).toMatch(/^webswarm_replays_total 0$/m);
    expect(text).toMatch(/^webswarm_hand_backs_total 0$/m);
    expect(checkMetrics(text)).toEqual({ status: 0, output: '' });
  });

  it('passes it too once requests were answered: the service figures per window, in seconds, by percentile', async () => {
    // The server computes every stage (the fallback): answered requests give the windowed figures samples (before,
    // promtool refused them: "ms" in a name, and a gauge with a quantile label; the first test answered nothing).
    const answering = await startTiny('stage');
    try {
      const url = answering.address().url;
      for (let i = 0; i < 2; i++) {
        const r = await fetch(`${url}/v1/completions`, { method: 'POST', body: '{"prompt": "Emma", "max_tokens": 3}' });
        expect(r.status).toBe(200);
      }
      const text = await (await fetch(`${url}/metrics`)).text();
      expect(text).toMatch(/^webswarm_seconds_per_token\{window="300s",percentile="p50"\} \d/m);
      expect(text).toMatch(/^webswarm_time_to_first_token_seconds\{window="3600s",percentile="p99"\} \d/m);
      const ttft = Number(/^webswarm_time_to_first_token_seconds\{window="300s",percentile="p50"\} (\S+)$/m.exec(text)?.[1]);
      expect(ttft, 'seconds, not milliseconds').toBeGreaterThan(0);
      expect(ttft).toBeLessThan(30);
      expect(checkMetrics(text)).toEqual({ status: 0, output: '' });
    } finally {
      await answering.close();
    }
  });

  it('names the process metrics once: webswarm_process_*, no doubled word, no gauge named like a counter', async () => {
    const text = await metrics();
    expect(text).toMatch(/^webswarm_process_resident_memory_bytes \d+/m);
    expect(text).toMatch(/^# TYPE webswarm_process_cpu_seconds_total counter$/m);
    expect(text).toMatch(/^webswarm_nodejs_active_handles\{type="\w+"\} \d+$/m);
    expect(text).not.toMatch(/process_process/);
    const types = [...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)];
    expect(types.length).toBeGreaterThan(20);
    for (const [, name, type] of types) if (name?.endsWith('_total')) expect(`${name} ${type}`).toBe(`${name} counter`);
  });

  it('the check fails on what prom-client names by default (the linter can fail)', () => {
    const r = checkMetrics(
      '# HELP x_nodejs_active_handles_total Total.\n# TYPE x_nodejs_active_handles_total gauge\nx_nodejs_active_handles_total 3\n',
    );
    expect(r.status).not.toBe(0);
    expect(r.output).toMatch(/non-counter metrics should not have "_total" suffix/);
  });
});
