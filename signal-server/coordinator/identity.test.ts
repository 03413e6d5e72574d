import { describe, expect, it } from 'vitest';
import { addressKey, DEFAULT_LOCAL_ADDRESSES, identityKeys } from './identity.js';
import { Links } from './links.js';

describe('who a volunteer is', () => {
  it('an IPv4 address, mapped or not, is one client; an IPv6 /64 is one client', () => {
    expect(addressKey('10.1.2.3')).toBe('10.1.2.3');
    expect(addressKey('::ffff:10.1.2.3')).toBe('10.1.2.3');
    expect(addressKey('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:0db8:0001:0002:ffff:ffff:ffff:fffe')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:db8::5')).toBe('2001:db8:0:0::/64');
  });

  it('this machine’s addresses are told apart by client key alone', () => {
    expect(identityKeys('abc', '127.0.0.1', DEFAULT_LOCAL_ADDRESSES)).toEqual(['key:abc']);
    expect(identityKeys(null, '127.0.0.9', DEFAULT_LOCAL_ADDRESSES)).toEqual(['addr:127.0.0.9']);
  });
});

describe('links between peers', () => {
  it('a pair linked by two sessions stays linked until both end', () => {
    const l = new Links();
    l.link('a', 'b');
    l.link('a', 'b');
    l.unlink('a', 'b');
    expect(l.linked('b', 'a')).toBe(true);
    l.unlink('a', 'b');
    expect(l.linked('a', 'b')).toBe(false);
    expect(l.linked('b', 'a')).toBe(false);
  });
});
