import { describe, expect, it } from 'vitest';
import { Audit, DEPARTED_KEPT } from './audit.js';
import { NoShowWindow } from './no-show-window.js';
import { MAX_REMEMBERED, RECORD_MEMORY_MS, RecordMemory } from './record-memory.js';

const KEYS = ['key:tab-0001', 'addr:203.0.113.5'];

function record(agreed: number, disagreed: number, missed: readonly number[] = []) {
  const noShows = new NoShowWindow();
  for (const id of missed) noShows.miss(id);
  return { counts: { agreed, disagreed }, noShows };
}

describe('RecordMemory: the records of clients whose last connection left, by client key', () => {
  it('a volunteer that comes back with its key resumes its record once; none without a key, nor by address alone', () => {
    const m = new RecordMemory();
    const left = record(12, 1, [7]);
    m.remember(KEYS, left);
    // Another client behind the same address: a record never passes to it.
    expect(m.resume(['key:other-0002', 'addr:203.0.113.5'])).toBeUndefined();
    expect(m.resume(['addr:203.0.113.5'])).toBeUndefined();
    // The record itself: what its last steps are judged after it left counts into what it resumes.
    const back = m.resume(['key:tab-0001', 'addr:198.51.100.9']);
    expect(back).toBe(left);
    expect(back?.noShows.count).toBe(1);
    // Taken: its new connection's record is remembered anew when it leaves.
    expect(m.resume(KEYS)).toBeUndefined();
    // A volunteer without a key (storage denied) is remembered under nothing.
    m.remember(['addr:203.0.113.5'], record(3, 3));
    expect(m.size).toBe(0);
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

describe('RecordMemory: sessions missed by a connection that left beside another of its key', () => {
  it('kept for the key: each of its connections is judged with them, and the record remembered after its last holds them; each session once', () => {
    const m = new RecordMemory();
    // A tab closed with two strikes while another tab of its key stays open: kept for the key.
    m.keepMissed(KEYS, record(0, 0, [3, 4]).noShows);
    expect(m.keepsMissed(KEYS)).toBe(true);
    expect(m.keepsMissed(['key:other-0002', 'addr:203.0.113.5'])).toBe(false);
    // Any connection of the key is judged with them, as often as asked (a "sink" tab that took them once, and never
    // missed, left the next tab a clean window: a red-team find), and another client's never is.
    const fresh = new NoShowWindow();
    expect(m.missedBy(['key:tab-0001', 'addr:198.51.100.9'], fresh)).toBe(2);
    expect(m.missedBy(KEYS, record(0, 0, [9]).noShows)).toBe(3);
    expect(m.missedBy(['key:other-0002', 'addr:203.0.113.5'], fresh)).toBe(0);
    // Two tabs closed one after the other: both windows kept, a session they both missed counted once.
    m.keepMissed(KEYS, record(0, 0, [4, 5]).noShows);
    expect(m.missedBy(KEYS, fresh)).toBe(3);
    // The last tab leaves with a record of its own: remembered with the kept strikes in it.
    m.remember(KEYS, record(9, 0, [6]));
    expect(m.keepsMissed(KEYS)).toBe(false);
    expect(m.resume(KEYS)?.noShows.count).toBe(4);
    // A tab that missed nothing leaves nothing; nor does a connection without a key.
    m.keepMissed(KEYS, new NoShowWindow());
    m.keepMissed(['addr:203.0.113.5'], record(0, 0, [1]).noShows);
    expect(m.missedSize).toBe(0);
  });

  it('old misses fall out as the key serves: a tab that missed sessions 1 and 2, then its sibling joined 3 to 22', () => {
    const m = new RecordMemory();
    m.keepMissed(KEYS, record(0, 0, [1, 2]).noShows);
    const sibling = new NoShowWindow();
    for (let id = 3; id <= 22; id++) sibling.showed(id);
    expect(m.missedBy(KEYS, sibling)).toBe(0);
    // Before, the kept misses were appended after the sibling's sessions, as if newest: 2 of the last 20, and one
    // more miss after the reload evicted an honest client (a red-team find).
    m.remember(KEYS, { counts: { agreed: 5, disagreed: 0 }, noShows: sibling });
    expect(m.resume(KEYS)?.noShows.count).toBe(0);
  });

  it('they fall out as any tab of the key serves: a clean tab that closes, or one still open, not only the one judged', () => {
    const missed = (ids: number[]) => record(0, 0, ids).noShows;
    const served = (from: number, to: number) => {
      const w = new NoShowWindow();
      for (let id = from; id <= to; id++) w.showed(id);
      return w;
    };
    // A tab misses 10 and 11 and closes beside another; a second tab serves 12 to 41 cleanly and closes; a third
    // misses 42: 1 of the key's last 20 (before: 3, and the third tab's miss evicted the key: a red-team find).
    const closed = new RecordMemory();
    closed.keepMissed(KEYS, missed([10, 11]));
    closed.keepMissed(KEYS, served(12, 41));
    expect(closed.missedBy(KEYS, missed([42]))).toBe(1);
    // The same where the tab that serves stays open: each session it joins counts in the key's window.
    const open = new RecordMemory();
    open.keepMissed(KEYS, missed([10, 11]));
    for (let id = 12; id <= 200; id++) open.showed(KEYS, id);
    expect(open.missedBy(KEYS, missed([201]))).toBe(1);
    // Another key's sessions touch nothing kept; a key with nothing kept keeps nothing of a clean tab.
    open.showed(['key:other-0002'], 202);
    expect(open.missedSize).toBe(1);
    const none = new RecordMemory();
    none.keepMissed(KEYS, served(1, 5));
    none.showed(KEYS, 6);
    expect(none.missedSize).toBe(0);
  });

  it("a tab's own strikes never fall out as its sibling tabs serve: with a key's misses kept, a tab that misses all it is given is judged on them", () => {
    const m = new RecordMemory();
    // A throwaway tab missed session 1 and closed beside the others: the key has misses kept.
    m.keepMissed(KEYS, record(0, 0, [1]).noShows);
    // A sibling serves sessions 2 to 60; this tab misses each one in ten from 30 on.
    const tab = new NoShowWindow();
    const judged: number[] = [];
    for (let id = 2; id <= 60; id++) {
      if (id % 10 === 0 && id >= 30) {
        tab.miss(id);
        judged.push(m.missedBy(KEYS, tab));
      } else m.showed(KEYS, id);
    }
    // Its third miss counts 3, as it does for a tab alone (before: at most 2, never evicted: a red-team find).
    expect(judged).toEqual([1, 2, 3, 4]);
  });

  it(`bounded and forgotten as records are: at most ${MAX_REMEMBERED}, for ${RECORD_MEMORY_MS / 3_600_000} h`, () => {
    let now = 0;
    const m = new RecordMemory(() => now);
    for (let i = 0; i < MAX_REMEMBERED + 10; i++) m.keepMissed([`key:k${i}`], record(0, 0, [i]).noShows);
    expect(m.missedSize).toBe(MAX_REMEMBERED);
    expect(m.keepsMissed(['key:k9'])).toBe(false);
    expect(m.missedBy(['key:k10'], new NoShowWindow())).toBe(1);
    now += RECORD_MEMORY_MS;
    expect(m.keepsMissed(['key:k11'])).toBe(false);
    expect(m.missedBy(['key:k11'], new NoShowWindow())).toBe(0);
  });
});

describe('Audit: one record for the connections of a client, counted into after a connection left', () => {
  it('connections that share a record count into it together, and each is judged on the whole', () => {
    const judged: [string, number][] = [];
    const audit = new Audit((id, c) => judged.push([id, c.disagreed]));
    const shared = audit.recordOf('tab-a');
    audit.share('tab-b', shared);
    audit.credit('tab-a', false);
    audit.credit('tab-b', false);
    audit.credit('tab-b', true);
    expect(audit.get('tab-a')).toEqual({ agreed: 1, disagreed: 2 });
    expect(audit.get('tab-b')).toEqual({ agreed: 1, disagreed: 2 });
    expect(judged).toEqual([
      ['tab-a', 1],
      ['tab-b', 2],
      ['tab-b', 2],
    ]);
  });

  it('a classification that comes after its connection left mid-session counts into its record, and names its keys', () => {
    const audit = new Audit();
    const r = audit.recordOf('liar');
    audit.credit('liar', false);
    audit.forget('liar', ['key:liar-0001', 'addr:203.0.113.5'], true);
    expect(audit.awaits(r)).toBe(true);
    audit.credit('liar', false);
    // Into the record it left with (which its next connection may share), not a fresh one under its gone id.
    expect(r).toEqual({ agreed: 0, disagreed: 2 });
    expect(audit.get('liar')).toEqual({ agreed: 0, disagreed: 2 });
    expect(audit.departedKeys('liar')).toEqual(['key:liar-0001', 'addr:203.0.113.5']);
    expect(audit.departedKeys('someone')).toBeUndefined();
    expect(audit.awaits({ agreed: 0, disagreed: 2 })).toBe(false);
  });

  it('a classification of a connection gone outside a session (or no longer kept) counts nowhere and leaves no entry', () => {
    const members = new Set(['honest']);
    const judged: string[] = [];
    const audit = new Audit(
      (id) => judged.push(id),
      (id) => members.has(id),
    );
    const r = audit.recordOf('left-idle');
    audit.forget('left-idle', ['key:k'], false);
    audit.credit('left-idle', false);
    audit.credit('never-here', true);
    audit.credit('honest', true);
    expect(r).toEqual({ agreed: 0, disagreed: 0 });
    expect(audit.departedKeys('left-idle')).toBeUndefined();
    expect(judged).toEqual(['honest']);
    expect(audit.get('never-here')).toEqual({ agreed: 0, disagreed: 0 });
  });

  it(`departures outside a session do not push a mid-session one out: ${DEPARTED_KEPT + 100} of them, and the liar's late vote still counts`, () => {
    const audit = new Audit(
      () => {},
      () => false,
    );
    const r = audit.share('liar', { agreed: 5, disagreed: 2 });
    audit.forget('liar', ['key:liar'], true);
    for (let i = 0; i < DEPARTED_KEPT + 100; i++) {
      audit.recordOf(`hello-${i}`);
      audit.forget(`hello-${i}`, [`addr:10.0.${i >> 8}.${i & 255}`], false);
    }
    audit.credit('liar', false);
    expect(r).toEqual({ agreed: 5, disagreed: 3 });
  });

  it(`bounded: the last ${DEPARTED_KEPT} departures mid-session are kept`, () => {
    const audit = new Audit();
    for (let i = 0; i < DEPARTED_KEPT + 10; i++) {
      audit.credit(`v${i}`, true);
      audit.forget(`v${i}`, [`key:k${i}`], true);
    }
    expect(audit.departedKeys('v9')).toBeUndefined();
    expect(audit.departedKeys('v10')).toEqual(['key:k10']);
    expect(audit.departedKeys(`v${DEPARTED_KEPT + 9}`)).toEqual([`key:k${DEPARTED_KEPT + 9}`]);
  });
});
