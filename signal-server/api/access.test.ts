import { describe, expect, it } from 'vitest';
import { AccessControl, LIGHT_RATE_FACTOR } from './access.js';

describe('AccessControl', () => {
  it('is open without keys and refuses a missing or wrong key when keys are set', () => {
    expect(new AccessControl({ apiKeys: [], ratePerMinute: 0 }).checkKey(null, '1.2.3.4')).toEqual({ ok: true, identity: 'addr:1.2.3.4' });
    // An IPv6 /64 is one client, as for sockets and volunteers (before, each of its addresses was one).
    const open = new AccessControl({ apiKeys: [], ratePerMinute: 0 });
    for (const a of ['2001:db8:1:2::a1', '2001:db8:1:2:ffff::7', '2001:0db8:0001:0002:0:0:0:1'])
      expect(open.checkKey(null, a), a).toEqual({ ok: true, identity: 'addr:2001:db8:1:2::/64' });
    expect(open.checkKey(null, '2001:db8:1:3::a1')).toEqual({ ok: true, identity: 'addr:2001:db8:1:3::/64' });
    expect(open.checkKey(null, '::ffff:1.2.3.4')).toEqual({ ok: true, identity: 'addr:1.2.3.4' });
    const a = new AccessControl({ apiKeys: ['k1', 'k2'], ratePerMinute: 0 });
    expect(a.checkKey(null, 'x')).toMatchObject({ ok: false, status: 401 });
    expect(a.checkKey('k3', 'x')).toMatchObject({ ok: false, status: 401, message: 'the API key is not valid' });
    expect(a.checkKey('k2', 'x')).toEqual({ ok: true, identity: 'key:k2' });
  });

  it('lets a minute’s allowance through, refuses the next with a retry time, and refills with time', () => {
    let t = 0;
    const a = new AccessControl({ apiKeys: [], ratePerMinute: 3 }, () => t);
    for (let i = 0; i < 3; i++) expect(a.take('a')).toMatchObject({ ok: true });
    const refused = a.take('a');
    expect(refused).toMatchObject({ ok: false, status: 429, retryAfterS: 20 });
    // Another identity has its own allowance.
    expect(a.take('b')).toMatchObject({ ok: true });
    t += 19_000;
    expect(a.take('a')).toMatchObject({ ok: false });
    // 40 s at 3 a minute is two requests' worth (before, float rounding left it a hair under two: one passed).
    t += 21_000;
    expect(a.take('a')).toMatchObject({ ok: true });
    expect(a.take('a')).toMatchObject({ ok: true });
    expect(a.take('a')).toMatchObject({ ok: false });
  });

  it('gives the tokenizer routes an allowance of their own, LIGHT_RATE_FACTOR times larger, spent apart', () => {
    let t = 0;
    const a = new AccessControl({ apiKeys: [], ratePerMinute: 3 }, () => t);
    for (let i = 0; i < 3; i++) expect(a.take('a')).toMatchObject({ ok: true });
    expect(a.take('a')).toMatchObject({ ok: false, status: 429 });
    // The generations' allowance is spent; the tokenizer's is whole, and spending it leaves the other as it is.
    for (let i = 0; i < 3 * LIGHT_RATE_FACTOR; i++) expect(a.take('a', true), `call ${i}`).toMatchObject({ ok: true });
    expect(a.take('a', true)).toMatchObject({
      ok: false,
      status: 429,
      retryAfterS: 1,
      message: `rate limit of ${3 * LIGHT_RATE_FACTOR} tokenizer and listing calls per minute reached; retry in 1 s`,
    });
    t += 20_000;
    expect(a.take('a')).toMatchObject({ ok: true });
    expect(a.take('a')).toMatchObject({ ok: false });
    // No limit stays no limit.
    const open = new AccessControl({ apiKeys: [], ratePerMinute: 0 });
    for (let i = 0; i < 100; i++) expect(open.take('a', true)).toMatchObject({ ok: true });
  });

  it('counts a batch as its prompts: the rest of a batch taken at once, one of more than a minute’s allowance never', () => {
    let t = 0;
    const a = new AccessControl({ apiKeys: [], ratePerMinute: 5 }, () => t);
    // A batch of 4: its request took one, the batch the 3 others.
    expect(a.take('a')).toMatchObject({ ok: true });
    expect(a.takeBatch('a', 4)).toMatchObject({ ok: true });
    expect(a.take('a')).toMatchObject({ ok: true });
    // 0 left: a batch of 2 waits for one more (12 s at 5 a minute), and takes nothing meanwhile.
    expect(a.takeBatch('a', 2)).toMatchObject({ ok: false, status: 429, retryAfterS: 12 });
    t += 12_000;
    expect(a.takeBatch('a', 2)).toMatchObject({ ok: true });
    expect(a.take('a')).toMatchObject({ ok: false });
    // Six prompts at 5 a minute: never, however long it waits (no retry time).
    t += 600_000;
    const never = a.takeBatch('a', 6);
    expect(never).toEqual({
      ok: false,
      status: 429,
      code: 'rate_limit_exceeded',
      message: 'more than the rate limit of 5 requests per minute allows; send at most 5 prompts a request',
    });
    // A single prompt takes nothing more; no limit stays no limit.
    expect(a.takeBatch('b', 1)).toMatchObject({ ok: true });
    const open = new AccessControl({ apiKeys: [], ratePerMinute: 0 });
    expect(open.takeBatch('a', 32)).toMatchObject({ ok: true });
  });
});
