/**
 * What two cheap requests cost the server's event loop, side by side in one run:
 *
 * - GET /api/status and /metrics: the service figures over an hour of 4 000 generations of 511 tokens (2 million
 *   tokens' ms), as ServiceStats counts them now (1 % buckets per 10 s slot) against every figure sorted, as it did
 *   before (and still does for an exact percentile): ms for both windows and the longest stall.
 * - A whole (not streamed) answer of about 23 MB (a batch's choices with log-probabilities) over HTTP to a reader in
 *   another process: one JSON.stringify and one write (sendJson, as before) against sendJsonInPieces; the time to
 *   the last byte read and the longest the event loop went without a turn meanwhile.
 *
 *   node --import tsx bench/server-costs.ts, or in npm run bench (BENCH_SERVER_COSTS=0 skips it)
 */
import { spawn } from 'node:child_process';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { seededRandom } from '../shared/model/sampling.js';
import { quantile, ServiceStats } from '../signal-server/coordinator/service-stats.js';
import { sendJsonInPieces } from '../signal-server/http/json-pieces.js';
import { sendJson } from '../signal-server/http/static-files.js';
import { longestStall } from '../testing/event-loop.js';
import { median, printTable } from './table.js';

/** `work` `repeats` times: the median ms and the median longest stall. */
async function measure(repeats: number, work: () => Promise<unknown>): Promise<{ ms: number; stall: number }> {
  const totals: number[] = [];
  const stalls: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const t0 = performance.now();
    stalls.push(await longestStall(work));
    totals.push(performance.now() - t0);
  }
  return { ms: median(totals), stall: median(stalls) };
}

function figuresRows(repeats: number): string[][] {
  let now = 0;
  const stats = new ServiceStats(() => now);
  const random = seededRandom(7);
  const kept: number[][] = [];
  for (let i = 0; i < 4_000; i++) {
    now = i * 900;
    const ms = Array.from({ length: 511 }, () => 2 + 300 * random() ** 3);
    kept.push(ms);
    stats.record({ ok: true, ttftMs: 50, msPerToken: ms, tokens: 512, verifiedTokens: 512, serverTokens: 0 });
  }
  const sorted = () => {
    // Before: every figure of each window flattened and sorted, a window at a time.
    for (const since of [now - 300_000, now - 3_600_000]) {
      const xs = kept.filter((_, i) => i * 900 >= since).flat();
      xs.sort((a, b) => a - b);
      quantile(xs, 0.99);
    }
  };
  const counted = () => {
    stats.window(300);
    stats.window(3600);
  };
  const time = (f: () => void) =>
    median(
      Array.from({ length: repeats }, () => {
        const t0 = performance.now();
        f();
        return performance.now() - t0;
      }),
    );
  const before = time(sorted);
  const after = time(counted);
  return [['both windows of an hour, 2 044 000 tokens', before.toFixed(1), after.toFixed(1), `${(before / after).toFixed(0)}×`]];
}

async function answerRow(repeats: number, send: (res: ServerResponse, body: unknown) => Promise<void> | void) {
  const choice = (i: number) => ({
    index: i,
    logprobs: Array.from({ length: 1_500 }, (_, t) => ({ token: `t${t}`, logprob: -t / 7, top: { a: -1, b: -2 } })),
  });
  const body = { object: 'text_completion', choices: Array.from({ length: 256 }, (_, i) => choice(i)) };
  let bytes = 0;
  const server = createServer((_req, res) => void send(res, body));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  try {
    const m = await measure(repeats, async () => {
      const child = spawn(process.execPath, [
        '-e',
        `fetch(${JSON.stringify(url)}).then((r) => r.text()).then((t) => process.stdout.write(String(t.length)))`,
      ]);
      let out = '';
      child.stdout.on('data', (c: Buffer) => {
        out += c.toString();
      });
      await new Promise((resolve) => child.on('close', resolve));
      bytes = Number(out);
    });
    return { ...m, bytes };
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
}

export async function benchServerCosts(o: { readonly repeats: number }): Promise<void> {
  printTable(
    `service figures (GET /api/status, /metrics) on the event loop, median of ${o.repeats}: ms`,
    ['figures over', 'every figure sorted (before)', 'counted in buckets (now)', 'before / now'],
    figuresRows(o.repeats),
  );
  const whole = await answerRow(o.repeats, (res, body) => sendJson(res, 200, body));
  const pieces = await answerRow(o.repeats, (res, body) => sendJsonInPieces(res, 200, body));
  printTable(
    `a whole answer of ${(pieces.bytes / 1e6).toFixed(1)} MB to a reader in another process, median of ${o.repeats} (each run includes the reader's start)`,
    ['written', 'ms to the last byte read', 'longest stall ms'],
    [
      ['one JSON.stringify (before)', whole.ms.toFixed(0), whole.stall.toFixed(0)],
      ['in pieces (now)', pieces.ms.toFixed(0), pieces.stall.toFixed(0)],
    ],
  );
}

if (import.meta.url === `file://${process.argv[1]}`) await benchServerCosts({ repeats: Number(process.env.BENCH_REPEATS ?? 3) });
