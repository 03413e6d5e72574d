// Log lines about refused requests are limited per client as the rate limits know it: behind a trusted proxy, the
// client its X-Forwarded-For names. Real server on port 0, real HTTP from 127.0.0.1 (the trusted proxy). A red-team
// pass found them keyed by the socket's address, the proxy's: one client's 10 refusals in 10 s silenced every other
// client's lines.
import { describe, expect, it } from 'vitest';
import { serverLog } from '../testing/server-log.js';
import { tinyServerForFile } from '../testing/tiny-stages.js';

const log = serverLog();
const server = tinyServerForFile('webswarm-refusal-lines-', { logger: log.logger, trustedProxies: ['127.0.0.1'] });

async function refused(path: string, forwardedFor: string): Promise<number> {
  const res = await fetch(`${server().address().url}${path}`, { headers: { 'x-forwarded-for': forwardedFor } });
  await res.arrayBuffer();
  return res.status;
}

describe('log lines about refused requests behind a proxy', () => {
  it.each([
    ['/v1/models/', 7],
    ['/no-such-page-', 8],
  ])('hostile: one client’s refusals under %s leave another client its own lines', async (prefix, n) => {
    for (let i = 0; i < 12; i++) expect(await refused(`${prefix}noise-${i}`, `198.51.100.${n}`)).toBe(404);
    for (let i = 0; i < 3; i++) expect(await refused(`${prefix}probe-${i}`, `203.0.113.${n}`)).toBe(404);
    const lines = (part: string) => log.lines.filter((l) => l.includes(`${prefix}${part}`)).length;
    // The flooding client: 10 lines (then a count of the rest); the other: each of its 3.
    expect(lines('noise-')).toBe(10);
    expect(lines('probe-')).toBe(3);
  });

  it('each names the client it refused, as the limits know it: a missing page, a request the API refuses', async () => {
    const ask = async (path: string, init: RequestInit) => {
      const res = await fetch(`${server().address().url}${path}`, init);
      await res.arrayBuffer();
      return res.status;
    };
    const from = (address: string) => ({ 'x-forwarded-for': address });
    expect(await ask('/nowhere-to-be-found', { headers: from('192.0.2.41') })).toBe(404);
    expect(
      await ask('/v1/completions', { method: 'POST', headers: { ...from('192.0.2.42'), 'content-type': 'application/json' }, body: '{' }),
    ).toBe(400);
    // Before: "api request POST \"/v1/completions\": 400 in 1 ms", naming nobody.
    expect(log.lines.filter((l) => l.includes('/nowhere-to-be-found') && l.includes('"from":"192.0.2.41"'))).toHaveLength(1);
    expect(log.lines.filter((l) => l.includes('"msg":"api request"') && l.includes('"from":"192.0.2.42"'))).toHaveLength(1);
  });

  it('are JSON lines with the fields of a served request: method, path, status (and ms for the API), and the client', async () => {
    const ask = async (path: string, init: RequestInit) => {
      const res = await fetch(`${server().address().url}${path}`, init);
      await res.arrayBuffer();
      return res.status;
    };
    const from = { 'x-forwarded-for': '192.0.2.43' };
    expect(await ask('/v1/models/no-such-model', { headers: from })).toBe(404);
    expect(await ask('/missing-page', { method: 'HEAD', headers: from })).toBe(404);
    expect(await ask('/v1/models', { headers: from })).toBe(200);
    const records = log.lines
      .filter((l) => l.includes('192.0.2.43') || l.includes('"path":"\\"/v1/models\\""'))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .map(({ msg, method, path, status, ms, from }) => ({ msg, method, path, status, ms: typeof ms, from }));
    // Before, a refusal's line was one sentence ("404 \"/missing-page\" (from 192.0.2.43)"): a JSON log's reader
    // found no status in it, where a served request's line had one.
    expect(records).toEqual([
      { msg: 'api request', method: 'GET', path: '"/v1/models/no-such-model"', status: 404, ms: 'number', from: '192.0.2.43' },
      { msg: 'http request', method: 'HEAD', path: '"/missing-page"', status: 404, ms: 'undefined', from: '192.0.2.43' },
      { msg: 'api request', method: 'GET', path: '"/v1/models"', status: 200, ms: 'number', from: undefined },
    ]);
  });
});
