import { describe, expect, it } from 'vitest';
import { SharedBans } from '../cluster/shared-state.js';
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

  it('forgets expired bans whose keys never come back, keeping the live ones (a client moving on to new addresses)', () => {
    const b = new BanList();
    // Ten minutes of evictions, a new key each second, for 10 hours: 36 000 bans, none of whose keys comes back.
    const start = 1_000_000;
    for (let i = 0; i < 36_000; i++) b.ban(`addr:10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`, start + i * 1000);
    // Only what is live (a ban lasts BAN_MS: 600 of them) and what expired since the last sweep is held.
    expect(b.size).toBeLessThanOrEqual(4 * (BAN_MS / 1000));
    const last = start + 35_999 * 1000;
    expect(b.banned('addr:10.0.140.159', last)).toBe(true); // the last one
    expect(b.banned(`addr:10.0.${(35_000 >> 8) & 255}.${35_000 & 255}`, last)).toBe(false); // banned 1 000 s before
    // A ban for longer (a cluster's) is not swept before its time.
    b.banUntil('long', last + 10 * BAN_MS, last);
    for (let i = 0; i < 3000; i++) b.ban(`later-${i}`, last + BAN_MS + i);
    expect(b.banned('long', last + 2 * BAN_MS)).toBe(true);
    // A cluster's list sweeps by the clock it is given too (before, by Date.now(): live bans of a manual clock went).
    const shared = new SharedBans();
    shared.ban('victim', 1_000);
    for (let i = 0; i < 1100; i++) shared.ban(`k${i}`, 1_000);
    expect(shared.banned('victim', 1_001)).toBe(true);
  });
});
