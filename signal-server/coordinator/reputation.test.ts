import { describe, expect, it } from 'vitest';
import { BAN_MS, BanList, reputation, shouldEvict } from './reputation.js';

describe('reputation', () => {
  it('starts at one half and follows the agreement rate', () => {
    expect(reputation({ agreed: 0, disagreed: 0 })).toBe(0.5);
    expect(reputation({ agreed: 98, disagreed: 0 })).toBeCloseTo(0.99, 2);
    expect(reputation({ agreed: 0, disagreed: 8 })).toBe(0.1);
  });

  it('evicts after repeated disagreement, not after one slip', () => {
    expect(shouldEvict({ agreed: 0, disagreed: 2 })).toBe(false);
    expect(shouldEvict({ agreed: 0, disagreed: 3 })).toBe(true);
    expect(shouldEvict({ agreed: 200, disagreed: 3 })).toBe(false);
  });

  it('bans a client key for a while', () => {
    const b = new BanList();
    b.ban('k', 1000);
    expect(b.banned('k', 1000 + BAN_MS - 1)).toBe(true);
    expect(b.banned('k', 1000 + BAN_MS)).toBe(false);
    expect(b.banned('other', 1000)).toBe(false);
  });
});
