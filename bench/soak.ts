/**
 * Soak (issue 15's figures people can hold us to): requests at a fixed rate
 * for a while against a real server whose volunteers (testing/node-volunteer.ts:
 * the real replica, real protocol, frames through the server's relay) join and
 * leave on a schedule; prints availability and latency percentiles, and what
 * the server's own GET /api/status says about the same minutes.
 *
 *   BENCH_SOAK_S (default 600) seconds, BENCH_SOAK_RATE (default 1) requests a second.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ServiceStatus } from '../signal-server/coordinator/service-stats.js';
import { quantile } from '../signal-server/coordinator/service-stats.js';
import { ensureStages, partitionKey } from '../signal-server/models/model-folder.js';
import { createSignalServer } from '../signal-server/server.js';
import { NodeVolunteer } from '../signal-server/testing/node-volunteer.js';
import { printTable } from './table.js';

const PROMPT = 'It is a truth universally acknowledged, that a single man';
const TOKENS = 16;
const STAGES = 2;
const R = 3;
/** Volunteers per stage at the start: r, plus one spare. */
const PER_STAGE = R + 1;

export async function benchSoak(o: { modelDir: string; seconds: number; ratePerS: number }): Promise<void> {
  const cache = mkdtempSync(join(tmpdir(), 'webswarm-soak-'));
  const { dir, manifest } = await ensureStages(o.modelDir, { stages: STAGES }, cache);
  const server = createSignalServer({
    port: 0,
    host: '127.0.0.1',
    webRoot: null,
    models: [{ dir, manifest, key: partitionKey(manifest.model.numLayers, { stages: STAGES }) }],
    redundancy: R,
    routeWaitMs: 5_000,
    joinTimeoutMs: 10_000,
    ratePerMinute: 0,
  });
  await server.ready;
  const url = server.address().url;
  let address = 10;
  const volunteers: NodeVolunteer[] = [];
  const join1 = () => {
    const v = new NodeVolunteer(url, { localAddress: `127.0.0.${address}`, clientKey: `soak-volunteer-${address}` });
    address = address >= 250 ? 10 : address + 1;
    volunteers.push(v);
    return v;
  };
  try {
    for (let i = 0; i < STAGES * PER_STAGE; i++) join1();
    for (const until = Date.now() + 60_000; (server.coordinator?.volunteers().filter((v) => v.ready).length ?? 0) < STAGES * PER_STAGE; ) {
      if (Date.now() > until) throw new Error('the soak swarm did not become ready within 60 s');
      await new Promise((r) => setTimeout(r, 100));
    }
    // Churn: every 20 s the longest-serving volunteer leaves and a new one joins (it loads and is challenged first).
    const churn = setInterval(() => {
      const old = volunteers.shift();
      void old?.close();
      join1();
    }, 20_000);
    const results: { ok: boolean; ms: number; ttftMs: number | null; code: string | null }[] = [];
    const inFlight: Promise<void>[] = [];
    const t0 = Date.now();
    try {
      for (let i = 0; Date.now() - t0 < o.seconds * 1000; i++) {
        const due = t0 + (i * 1000) / o.ratePerS;
        await new Promise((r) => setTimeout(r, Math.max(0, due - Date.now())));
        inFlight.push(
          (async () => {
            const s = performance.now();
            let ttftMs: number | null = null;
            try {
              const res = await fetch(`${url}/v1/completions`, {
                method: 'POST',
                headers: { 'content-type': 'application/json' },
                body: JSON.stringify({ prompt: PROMPT, max_tokens: TOKENS, temperature: 0, stream: true }),
              });
              if (res.status !== 200 || res.body === null) {
                const body = (await res.json()) as { error?: { code?: string } };
                results.push({ ok: false, ms: performance.now() - s, ttftMs, code: body.error?.code ?? String(res.status) });
                return;
              }
              const reader = res.body.getReader();
              let text = '';
              for (;;) {
                const { done, value } = await reader.read();
                if (done) break;
                if (ttftMs === null) ttftMs = performance.now() - s;
                text += new TextDecoder().decode(value);
              }
              const failed = /"error"/.test(text);
              results.push({ ok: !failed, ms: performance.now() - s, ttftMs, code: failed ? 'stream error' : null });
            } catch (e) {
              results.push({ ok: false, ms: performance.now() - s, ttftMs, code: (e as Error).message });
            }
          })(),
        );
      }
      await Promise.all(inFlight);
    } finally {
      clearInterval(churn);
    }
    const ok = results.filter((r) => r.ok);
    const ttft = ok.flatMap((r) => (r.ttftMs === null ? [] : [r.ttftMs])).sort((a, b) => a - b);
    const total = ok.map((r) => r.ms).sort((a, b) => a - b);
    const codes = new Map<string, number>();
    for (const r of results) if (!r.ok) codes.set(r.code ?? '?', (codes.get(r.code ?? '?') ?? 0) + 1);
    const fmt = (xs: number[], q: number) => (quantile(xs, q) ?? Number.NaN).toFixed(0);
    printTable(
      `soak: ${o.seconds} s at ${o.ratePerS} request/s (${TOKENS} tokens each, streamed), ${STAGES} stages × r = ${R} of Node volunteers, one leaving and one joining every 20 s`,
      ['requests', 'answered', 'time to first byte ms p50 / p95 / p99', 'whole request ms p50 / p95 / p99', 'failures'],
      [
        [
          String(results.length),
          `${((100 * ok.length) / Math.max(1, results.length)).toFixed(1)} %`,
          `${fmt(ttft, 0.5)} / ${fmt(ttft, 0.95)} / ${fmt(ttft, 0.99)}`,
          `${fmt(total, 0.5)} / ${fmt(total, 0.95)} / ${fmt(total, 0.99)}`,
          [...codes].map(([c, n]) => `${c} × ${n}`).join(', ') || 'none',
        ],
      ],
    );
    const status = (await (await fetch(`${url}/api/status`)).json()) as ServiceStatus;
    const w = status.windows[0];
    if (w !== undefined)
      process.stdout.write(
        `GET /api/status over the last ${w.windowS} s: ${w.requests} requests, answered ${((w.answered ?? 0) * 100).toFixed(1)} %, ` +
          `time to first token p50/p95/p99 ${w.ttftMs.p50}/${w.ttftMs.p95}/${w.ttftMs.p99} ms, ms/token p50/p95/p99 ${w.msPerToken.p50}/${w.msPerToken.p95}/${w.msPerToken.p99}, ` +
          `tokens verified by volunteers ${((w.verifiedByVolunteers ?? 0) * 100).toFixed(1)} %\n`,
      );
  } finally {
    for (const v of volunteers) await v.close();
    await server.close();
    rmSync(cache, { recursive: true, force: true });
  }
}

const isMain = process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].replace(/\\/g, '/'));
if (isMain) {
  const { DEFAULT_MODEL, modelDir } = await import('../signal-server/defaults.js');
  await benchSoak({
    modelDir: modelDir(DEFAULT_MODEL),
    seconds: Number(process.env.BENCH_SOAK_S ?? 600),
    ratePerS: Number(process.env.BENCH_SOAK_RATE ?? 1),
  });
  process.exit(0);
}
