import { describe, expect, it } from 'vitest';
import { addressBytes, TrustedProxies } from './client-address.js';

describe('TrustedProxies', () => {
  const proxies = new TrustedProxies(['127.0.0.1', '10.0.0.0/8', 'fd00::/8']);

  it('believes X-Forwarded-For only from a trusted proxy', () => {
    expect(proxies.clientAddress('127.0.0.1', '198.51.100.7')).toBe('198.51.100.7');
    expect(proxies.clientAddress('::ffff:127.0.0.1', '198.51.100.7')).toBe('198.51.100.7');
    expect(proxies.clientAddress('10.20.30.40', '2001:db8::5')).toBe('2001:db8::5');
    expect(proxies.clientAddress('fd12::1', '198.51.100.7')).toBe('198.51.100.7');
    // A client that connects directly and writes the header itself is keyed by its own address.
    expect(proxies.clientAddress('198.51.100.9', '203.0.113.1')).toBe('198.51.100.9');
    expect(proxies.clientAddress('11.0.0.1', '203.0.113.1')).toBe('11.0.0.1');
    expect(new TrustedProxies([]).clientAddress('127.0.0.1', '198.51.100.7')).toBe('127.0.0.1');
  });

  it('reads the chain from the right, past trusted proxies only', () => {
    // The client wrote "6.6.6.6" itself; the first proxy appended the client's real address, the second the first's.
    expect(proxies.clientAddress('127.0.0.1', '6.6.6.6, 198.51.100.7, 10.1.2.3')).toBe('198.51.100.7');
    expect(proxies.clientAddress('127.0.0.1', ['6.6.6.6, 198.51.100.7', '10.1.2.3'])).toBe('198.51.100.7');
    // Every hop a trusted proxy: the leftmost is the client.
    expect(proxies.clientAddress('127.0.0.1', '10.0.0.9, 10.1.2.3')).toBe('10.0.0.9');
  });

  it('stops at a malformed entry with the last address a trusted proxy vouched for', () => {
    expect(proxies.clientAddress('127.0.0.1', '')).toBe('127.0.0.1');
    expect(proxies.clientAddress('127.0.0.1', 'unknown')).toBe('127.0.0.1');
    expect(proxies.clientAddress('127.0.0.1', '198.51.100.7:4711')).toBe('127.0.0.1');
    expect(proxies.clientAddress('127.0.0.1', '198.51.100.7, garbage, 10.1.2.3')).toBe('10.1.2.3');
    expect(proxies.clientAddress(undefined, '198.51.100.7')).toBe('unknown');
  });

  it('reads at most 32 hops of a long header', () => {
    const header = [...Array.from({ length: 1000 }, () => '10.0.0.1'), '198.51.100.7'].join(',');
    expect(proxies.clientAddress('127.0.0.1', header)).toBe('198.51.100.7');
    expect(proxies.clientAddress('127.0.0.1', Array.from({ length: 1000 }, () => '10.0.0.1').join(','))).toBe('10.0.0.1');
  });

  it('refuses an entry that is not an address or a CIDR range, by name', () => {
    expect(() => new TrustedProxies(['proxy.example.org'])).toThrow(/"proxy.example.org" is not an IP address/);
    expect(() => new TrustedProxies(['10.0.0.0/33'])).toThrow(/\/33 is not a prefix length for IPv4/);
    expect(() => new TrustedProxies(['fd00::/129'])).toThrow(/\/129/);
    expect(() => new TrustedProxies(['10.0.0.0/8/1'])).toThrow(/not an IP address/);
    expect(() => new TrustedProxies(['10.0.0.0/x'])).toThrow(/prefix length/);
  });

  it('refuses a range written from an address inside it (before, 10.0.0.1/8 trusted all of 10/8 without a word)', () => {
    expect(() => new TrustedProxies(['10.0.0.1/8'])).toThrow(
      'trusted proxy "10.0.0.1/8" has bits set past its /8: write the one address without /8, or the range from its first address',
    );
    expect(() => new TrustedProxies(['fd00::1/8'])).toThrow(/"fd00::1\/8" has bits set past its \/8/);
    expect(() => new TrustedProxies(['10.3.0.0/15'])).toThrow(/bits set past its \/15/);
    // Ranges from their first address, and single addresses with a full prefix, as before.
    for (const ok of ['10.0.0.0/8', '10.2.0.0/15', '10.0.0.1/32', 'fd00::/8', '2001:db8::1/128', '::ffff:10.0.0.0/104', '0.0.0.0/0'])
      expect(() => new TrustedProxies([ok]), ok).not.toThrow();
  });

  it('reads an IP address as its bytes, IPv6 with a dotted IPv4 tail too', () => {
    expect(addressBytes('10.0.0.1')).toEqual([10, 0, 0, 1]);
    expect(addressBytes('::ffff:1.2.3.4')).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 1, 2, 3, 4]);
    expect(addressBytes('2001:db8::1:2')).toEqual([32, 1, 13, 184, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2]);
    expect(addressBytes('1:2:3:4:5:6:7:8')).toEqual([0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8]);
    expect(addressBytes('fe80::1.2.3.4')).toEqual([254, 128, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]);
    expect(addressBytes('proxy')).toBeNull();
  });
});
