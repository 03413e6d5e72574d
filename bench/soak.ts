/**
 * Soak (issue 15's figures people can hold us to): requests at a fixed rate
 * for a while against a real server whose volunteers (testing/node-volunteer.ts:
 * the real replica, real protocol, frames through the server's relay) join and
 * leave on a schedule; prints availability and latency percentiles, and what
 * the server's own GET /api/status says about the same minutes.
 *
 * Run twice side by side, with FALLBACK=off and FALLBACK=stage, through a
 * drought (half the volunteers gone for a third of the time).
 *
 *   BENCH_SOAK_S (default 600, split between the two) seconds, BENCH_SOAK_RATE (default 1) requests a second.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseServiceStatus, type ServiceStatus } from '../shared/protocol/http.js';
import type { FallbackMode } from '../signal-server/coordinator/fallback.js';
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

/** One soak's figures. */
interface SoakRow {
  readonly requests: number;
  readonly answered: number;
  readonly ttft: number[];
  readonly total: number[];
  readonly codes: Map<string, number>;
  readonly status: ServiceStatus | null;
}

/**
 * Requests at a fixed rate for `seconds` against a server of 2 stages × r = 3
 * (4 volunteers per stage), one volunteer leaving and one joining every 20 s;
 * for the middle third, a drought: half the volunteers are gone, so both
 * stages are short of r. With FALLBACK=off those requests fail (503); with
 * FALLBACK=stage the server computes the short stages.
 */
async function soakOnce(o: { modelDir: string; seconds: number; ratePerS: number }, fallback: FallbackMode): Promise<SoakRow> {
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
    apiMaxConcurrent: 0,
    fallback,
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
  const timers: ReturnType<typeof setTimeout>[] = [];
  try {
    for (let i = 0; i < STAGES * PER_STAGE; i++) join1();
    for (const until = Date.now() + 60_000; (server.coordinator?.volunteers().filter((v) => v.ready).length ?? 0) < STAGES * PER_STAGE; ) {
      if (Date.now() > until) throw new Error('the soak swarm did not become ready within 60 s');
      await new Promise((r) => setTimeout(r, 100));
    }
    // Churn: every 20 s the longest-serving volunteer leaves and a new one joins (it loads and is challenged first).
    let drought = false;
    timers.push(
      setInterval(() => {
        if (drought) return;
        const old = volunteers.shift();
        void old?.close();
        join1();
      }, 20_000),
    );
    // The drought: for the middle third, half of the volunteers are gone; then as many new ones join.
    const third = (o.seconds * 1000) / 3;
    timers.push(
      setTimeout(() => {
        drought = true;
        for (const v of volunteers.splice(0, Math.floor(volunteers.length / 2))) void v.close();
      }, third),
      setTimeout(() => {
        drought = false;
        while (volunteers.length < STAGES * PER_STAGE) join1();
      }, 2 * third),
    );
    const results: { ok: boolean; ms: number; ttftMs: number | null; code: string | null }[] = [];
    const inFlight: Promise<void>[] = [];
    const t0 = Date.now();
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
            const code = /"code":"(ERR_[A-Z_]+)"/.exec(text)?.[1] ?? '?';
            results.push({ ok: !failed, ms: performance.now() - s, ttftMs, code: failed ? `${code} in the stream` : null });
          } catch (e) {
            results.push({ ok: false, ms: performance.now() - s, ttftMs, code: (e as Error).message });
          }
        })(),
      );
    }
    await Promise.all(inFlight);
    const ok = results.filter((r) => r.ok);
    const codes = new Map<string, number>();
    for (const r of results) if (!r.ok) codes.set(r.code ?? '?', (codes.get(r.code ?? '?') ?? 0) + 1);
    const parsed = parseServiceStatus(await (await fetch(`${url}/api/status`)).json());
    return {
      requests: results.length,
      answered: ok.length,
      ttft: ok.flatMap((r) => (r.ttftMs === null ? [] : [r.ttftMs])).sort((a, b) => a - b),
      total: ok.map((r) => r.ms).sort((a, b) => a - b),
      codes,
      status: parsed.ok ? parsed.value : null,
    };
  } finally {
    for (const t of timers) clearTimeout(t);
    for (const v of volunteers) await v.close();
    await server.close();
    rmSync(cache, { recursive: true, force: true });
  }
}

/** The soak twice, side by side: without the fallback and with it, each for half of `seconds`. */
export async function benchSoak(o: { modelDir: string; seconds: number; ratePerS: number }): Promise<void> {
  const half = { ...o, seconds: Math.max(30, Math.round(o.seconds / 2)) };
  const rows: string[][] = [];
  for (const fallback of ['off', 'stage'] as const) {
    const r = await soakOnce(half, fallback);
    const fmt = (xs: number[], q: number) => (quantile(xs, q) ?? Number.NaN).toFixed(0);
    const w = r.status?.windows[0];
    const share = (v: number | null | undefined) => (v === null || v === undefined ? '–' : `${(v * 100).toFixed(1)} %`);
    rows.push([
      `FALLBACK=${fallback}`,
      String(r.requests),
      `${((100 * r.answered) / Math.max(1, r.requests)).toFixed(1)} %`,
      `${fmt(r.ttft, 0.5)} / ${fmt(r.ttft, 0.95)} / ${fmt(r.ttft, 0.99)}`,
      `${fmt(r.total, 0.5)} / ${fmt(r.total, 0.95)} / ${fmt(r.total, 0.99)}`,
      w === undefined ? '–' : `${w.msPerToken.p50} / ${w.msPerToken.p95} / ${w.msPerToken.p99}`,
      share(w?.verifiedByVolunteers),
      share(w?.computedByServer),
      [...r.codes].map(([c, n]) => `${c} × ${n}`).join(', ') || 'none',
    ]);
  }
  printTable(
    `soak: ${half.seconds} s per row at ${o.ratePerS} request/s (${TOKENS} tokens each, streamed), ${STAGES} stages × r = ${R} of Node volunteers (${PER_STAGE} per stage), one leaving and one joining every 20 s, half of them gone for the middle third`,
    [
      'setting',
      'requests',
      'answered',
      'first byte ms p50 / p95 / p99',
      'whole request ms p50 / p95 / p99',
      'ms/token p50 / p95 / p99 (/api/status)',
      'tokens verified by volunteers',
      'tokens computed in part by the server',
      'failures',
    ],
    rows,
  );
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
