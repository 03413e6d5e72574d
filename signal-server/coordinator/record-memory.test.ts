import { describe, expect, it } from 'vitest';
import { NoShowWindow } from './no-show-window.js';
import { MAX_REMEMBERED, RECORD_MEMORY_MS, RecordMemory } from './record-memory.js';

const KEYS = ['key:tab-0001', 'addr:203.0.113.5'];

function record(agreed: number, disagreed: number, missed: readonly number[] = []) {
  const noShows = new NoShowWindow();
  for (const id of missed) noShows.miss(id);
  return { counts: { agreed, disagreed }, noShows };
}

describe('RecordMemory: the records of volunteers that left, by client key', () => {
  it('a volunteer that comes back with its key resumes its record once; none without a key, nor by address alone', () => {
    const m = new RecordMemory();
    m.remember(KEYS, record(12, 1, [7]));
    // Another client behind the same address: a record never passes to it.
    expect(m.resume(['key:other-0002', 'addr:203.0.113.5'])).toBeUndefined();
    expect(m.resume(['addr:203.0.113.5'])).toBeUndefined();
    const back = m.resume(['key:tab-0001', 'addr:198.51.100.9']);
    expect(back?.counts).toEqual({ agreed: 12, disagreed: 1 });
    expect(back?.noShows.count).toBe(1);
    // Taken: its new connection's record is remembered anew when it leaves.
    expect(m.resume(KEYS)).toBeUndefined();
    // A volunteer without a key (storage denied) is remembered under nothing.
    m.remember(['addr:203.0.113.5'], record(3, 3));
    expect(m.size).toBe(0);
  });

  it('two records under one key (two tabs of one browser): the worse is kept, whichever left last', () => {
    for (const order of [0, 1]) {
      const m = new RecordMemory();
      const good = record(40, 0);
      const bad = record(1, 2);
      for (const r of order === 0 ? [good, bad] : [bad, good]) m.remember(KEYS, r);
      expect(m.resume(KEYS)?.counts).toEqual({ agreed: 1, disagreed: 2 });
    }
    // The same reputation: the one that missed more sessions.
    const m = new RecordMemory();
    m.remember(KEYS, record(5, 0, [1, 2]));
    m.remember(KEYS, record(5, 0));
    expect(m.resume(KEYS)?.noShows.count).toBe(2);
  });

  it('a connection of its key still open: the new one starts with the worse of that record and the remembered one', () => {
    const m = new RecordMemory();
    // Nothing remembered yet (its last connection has not closed): the open one's record, copied.
    const open = record(0, 2, [4]);
    const first = m.resume(KEYS, [open]);
    expect(first?.counts).toEqual({ agreed: 0, disagreed: 2 });
    first?.noShows.miss(5);
    expect(open.noShows.count).toBe(1);
    // A worse remembered record wins over a better open one, and is taken.
    m.remember(KEYS, record(0, 3));
    expect(m.resume(KEYS, [record(20, 0)])?.counts).toEqual({ agreed: 0, disagreed: 3 });
    expect(m.resume(KEYS)).toBeUndefined();
    // No key, no record: an open connection's is not looked at.
    expect(m.resume(['addr:203.0.113.5'], [open])).toBeUndefined();
  });

  it('nothing to remember of a volunteer with no votes and no missed session', () => {
    const m = new RecordMemory();
    m.remember(KEYS, record(0, 0));
    expect(m.size).toBe(0);
    expect(m.resume(KEYS)).toBeUndefined();
  });

  it('the window of missed sessions is copied: what its old connection does after it left changes nothing', () => {
    const m = new RecordMemory();
    const r = record(2, 0, [1]);
    m.remember(KEYS, r);
    r.noShows.miss(2);
    r.noShows.miss(3);
    const back = m.resume(KEYS);
    expect(back?.noShows.count).toBe(1);
    // Nor what the resumed one does to what is remembered later.
    back?.noShows.miss(4);
    expect(r.noShows.count).toBe(3);
  });

  it(`forgotten after RECORD_MEMORY_MS (${RECORD_MEMORY_MS / 3_600_000} h)`, () => {
    let now = 1_000_000;
    const m = new RecordMemory(() => now);
    m.remember(KEYS, record(1, 2));
    now += RECORD_MEMORY_MS - 1;
    expect(m.resume(KEYS)?.counts).toEqual({ agreed: 1, disagreed: 2 });
    m.remember(KEYS, record(1, 2));
    now += RECORD_MEMORY_MS;
    expect(m.resume(KEYS)).toBeUndefined();
  });

  it(`bounded: at most ${MAX_REMEMBERED} records, the oldest go first, the expired before them`, () => {
    let now = 0;
    const m = new RecordMemory(() => now);
    for (let i = 0; i < MAX_REMEMBERED + 100; i++) m.remember([`key:k${i}`], record(1, 0));
    expect(m.size).toBe(MAX_REMEMBERED);
    expect(m.resume(['key:k99'])).toBeUndefined();
    expect(m.resume(['key:k100'])).toBeDefined();
    expect(m.resume([`key:k${MAX_REMEMBERED + 99}`])).toBeDefined();
    // A day later, one more record: every expired one goes with the first that is remembered.
    now += RECORD_MEMORY_MS;
    m.remember(['key:late'], record(1, 0));
    expect(m.size).toBe(1);
  });
});
