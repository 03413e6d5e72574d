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
    expect(log.lines.filter((l) => l.includes('/nowhere-to-be-found') && l.includes('(from 192.0.2.41)'))).toHaveLength(1);
    expect(log.lines.filter((l) => l.includes('api request POST') && l.includes('(from 192.0.2.42)'))).toHaveLength(1);
  });
});
