// Behind a reverse proxy every connection comes from the proxy's address: with
// TRUSTED_PROXIES the server keys clients by the address the proxy forwards
// (X-Forwarded-For), and by nothing a client writes itself. Real server on
// port 0, real socket.io clients and HTTP requests from 127.0.0.x.
import { request } from 'node:http';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { fetchSwarmListing } from '../testing/swarm-listing.js';
import { createLogger } from './log.js';
import { httpSwarm, WAIT_MS } from './testing/http-swarm.js';

const { start, volunteer } = httpSwarm('proxies');
const LIMITED = 'ERR_RATE_LIMITED';

/** POSTs a completion from `localAddress` with the given X-Forwarded-For; resolves to the status. */
function completeFrom(url: string, localAddress: string, forwardedFor: string): Promise<number> {
  const body = JSON.stringify({ prompt: 'a', max_tokens: 1 });
  return new Promise((resolve, reject) => {
    const req = request(
      `${url}/v1/completions`,
      {
        method: 'POST',
        localAddress,
        headers: { 'content-type': 'application/json', 'content-length': String(body.length), 'x-forwarded-for': forwardedFor },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

describe('TRUSTED_PROXIES', () => {
  it('keys volunteers behind a trusted proxy by the forwarded address: 16 per client, others unaffected', async () => {
    const { url } = await start(1, 3, { trustedProxies: ['127.0.0.1'] });
    // 127.0.0.1 is one of LOCAL_ADDRESSES (told apart by key alone): without the header these would all register.
    const one = Array.from({ length: 18 }, () =>
      volunteer(url, '127.0.0.1', { readyAtOnce: true, challenges: 'never', extraHeaders: { 'x-forwarded-for': '198.51.100.7' } }),
    );
    await expect.poll(() => one.filter((v) => v.errors.some((e) => e.code === LIMITED)).length, { timeout: WAIT_MS }).toBe(2);
    const other = volunteer(url, '127.0.0.1', { challenges: 'never', extraHeaders: { 'x-forwarded-for': '198.51.100.8' } });
    await expect.poll(() => other.stage, { timeout: WAIT_MS }).not.toBeNull();
    expect(other.errors.map((e) => e.code)).not.toContain(LIMITED);
    expect((await fetchSwarmListing(url)).list).toHaveLength(17);
  });

  it('ignores X-Forwarded-For from an address that is not a trusted proxy: spoofed headers change no key', async () => {
    const { url } = await start(1, 3, { trustedProxies: ['127.0.0.1'] });
    const flood = Array.from({ length: 18 }, (_, i) =>
      volunteer(url, '127.0.0.160', { readyAtOnce: true, challenges: 'never', extraHeaders: { 'x-forwarded-for': `203.0.113.${i + 1}` } }),
    );
    await expect.poll(() => flood.filter((v) => v.errors.some((e) => e.code === LIMITED)).length, { timeout: WAIT_MS }).toBe(2);
    expect((await fetchSwarmListing(url)).list).toHaveLength(16);
  });

  it("rate-limits the open API per forwarded client, and a direct client's own header counts for nothing", async () => {
    const { url } = await start(1, 3, { trustedProxies: ['127.0.0.1'], ratePerMinute: 2, routeWaitMs: 100, fallback: 'off' });
    // No volunteers: an admitted request fails 503 (no route), a refused one 429.
    const a = [];
    for (let i = 0; i < 3; i++) a.push(await completeFrom(url, '127.0.0.1', '198.51.100.7'));
    expect(a).toEqual([503, 503, 429]);
    expect(await completeFrom(url, '127.0.0.1', '198.51.100.8')).toBe(503);
    const spoofed = [];
    for (let i = 0; i < 3; i++) spoofed.push(await completeFrom(url, '127.0.0.161', `203.0.113.${i + 1}`));
    expect(spoofed).toEqual([503, 503, 429]);
    // An IPv6 /64 is one client, as for sockets (a red-team pass: its addresses were one each, eight times the limit).
    const v6 = [];
    for (let i = 0; i < 3; i++) v6.push(await completeFrom(url, '127.0.0.1', `2001:db8:1:2::${i + 10}`));
    expect(v6).toEqual([503, 503, 429]);
    expect(await completeFrom(url, '127.0.0.1', '2001:db8:1:3::10')).toBe(503);
  });

  it('says in its log when a local connection carries X-Forwarded-For and no proxy is trusted', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(
          ...chunk
            .toString('utf8')
            .split('\n')
            .filter((l) => l !== ''),
        );
        done();
      },
    });
    const { url } = await start(1, 3, { logger: createLogger('info', sink) });
    const vs = [0, 1].map(() => volunteer(url, '127.0.0.1', { challenges: 'never', extraHeaders: { 'x-forwarded-for': '198.51.100.7' } }));
    await expect.poll(() => vs.every((v) => v.stage !== null), { timeout: WAIT_MS }).toBe(true);
    expect(lines.filter((l) => l.includes('set TRUSTED_PROXIES=127.0.0.1'))).toHaveLength(1);
  });

  it('says so for the HTTP API too, once: behind an untrusted proxy its clients share one allowance (before, said for sockets only)', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(...chunk.toString('utf8').split('\n'));
        done();
      },
    });
    const { url } = await start(1, 3, { logger: createLogger('info', sink) });
    for (let i = 0; i < 3; i++) await fetch(`${url}/v1/models`, { headers: { 'x-forwarded-for': `198.51.100.${i + 1}` } });
    await fetch(`${url}/v1/models`);
    const told = lines.filter((l) => l.includes('set TRUSTED_PROXIES=127.0.0.1'));
    expect(told).toHaveLength(1);
    expect(told[0]).toContain('an HTTP request from 127.0.0.1 (one of LOCAL_ADDRESSES) carries X-Forwarded-For');
    expect(told[0]).toContain('shares one API allowance');
    // A warning (40): LOG_LEVEL=warn does not hide the operator's mistake (before, an info line).
    expect((JSON.parse(told[0] as string) as { level: number }).level).toBe(40);
  });
});
