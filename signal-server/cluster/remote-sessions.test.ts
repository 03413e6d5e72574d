import { describe, expect, it } from 'vitest';
import { MESH_AHEAD } from '../../shared/swarm/mesh-loop.js';
import { AWAITED_FOR_MS, PROGRESS_EVERY, RemoteSessions } from './remote-sessions.js';

describe('RemoteSessions', () => {
  it("counts each volunteer's sessions of other processes once, and ends a dead process's", () => {
    const r = new RemoteSessions();
    r.opened(2, 2_000_001, 'a');
    r.opened(2, 2_000_001, 'a'); // a repeated open is one session
    r.opened(2, 2_000_002, 'a');
    r.opened(3, 3_000_001, 'a');
    r.opened(2, 2_000_001, 'b');
    expect([r.of('a'), r.of('b'), r.of('c')]).toEqual([3, 1, 0]);
    r.closed(2, 2_000_002, 'a');
    r.closed(2, 2_000_002, 'a'); // closed twice: counted once
    r.closed(3, 2_000_001, 'b'); // another process's session id: not this one's
    expect([r.of('a'), r.of('b')]).toEqual([2, 1]);
    const ended = r.endAll(2);
    expect(ended.map(([id, vs]) => [id, [...vs]])).toEqual([[2_000_001, ['a', 'b']]]);
    expect([r.of('a'), r.of('b')]).toEqual([1, 0]);
    expect(r.endAll(2)).toEqual([]);
    r.forget('a');
    expect(r.of('a')).toBe(0);
  });

  it('forgets a volunteer that left from the sessions it was in: their close never reaches it (before, each stayed tracked)', () => {
    const r = new RemoteSessions();
    r.opened(2, 2_000_001, 'a');
    r.opened(2, 2_000_002, 'a');
    r.opened(2, 2_000_002, 'b');
    r.opened(3, 3_000_001, 'a');
    expect(r.tracked).toBe(3);
    r.forget('a');
    expect([r.tracked, r.of('a'), r.of('b'), r.opensOn(2, 2_000_002, 'b'), r.opensOn(2, 2_000_001, 'a')]).toEqual([1, 0, 1, true, false]);
    r.forget('b');
    expect(r.tracked).toBe(0);
  });

  it('ends the sessions a process says it no longer runs on our volunteers (their close was lost), and no other', () => {
    const r = new RemoteSessions();
    r.opened(2, 2_000_001, 'a');
    r.opened(2, 2_000_001, 'b');
    r.opened(2, 2_000_002, 'a');
    r.opened(3, 3_000_001, 'a');
    // Process 2 runs 2 000 001 on b alone now: a's place in it and 2 000 002 closed there.
    const ended = r.keepOnly(2, new Map([[2_000_001, new Set(['b'])]]));
    expect(ended).toEqual([
      [2_000_001, ['a']],
      [2_000_002, ['a']],
    ]);
    expect([r.of('a'), r.of('b'), r.opensOn(2, 2_000_002, 'a')]).toEqual([1, 1, true]);
    // Said again: nothing more to end; another process's sessions untouched.
    expect(r.keepOnly(2, new Map([[2_000_001, new Set(['b'])]]))).toEqual([]);
    expect(r.keepOnly(2, new Map())).toEqual([[2_000_001, ['b']]]);
    expect([r.of('a'), r.of('b'), r.tracked]).toEqual([1, 0, 1]);
    expect(r.keepOnly(4, new Map())).toEqual([]);
  });

  it('keeps at most 10 000 sessions of a process, dropping the oldest with its counts', () => {
    const r = new RemoteSessions();
    for (let i = 0; i < 10_001; i++) r.opened(4, i, i === 0 ? 'first' : 'v');
    expect(r.of('first')).toBe(0);
    expect(r.of('v')).toBe(10_000);
  });

  it('knows which sessions a process opened on which volunteer, open or closed lately (the newest 1 024)', () => {
    const r = new RemoteSessions();
    r.opened(2, 131_073, 'a');
    expect([r.opensOn(2, 131_073, 'a'), r.opensOn(2, 131_073, 'b'), r.opensOn(3, 131_073, 'a'), r.opensOn(2, 131_074, 'a')]).toEqual([
      true,
      false,
      false,
      false,
    ]);
    r.closed(2, 131_073, 'a');
    expect(r.opensOn(2, 131_073, 'a')).toBe(true); // its late reports are still owed
    for (let i = 0; i < 1_024; i++) {
      r.opened(5, i, 'v');
      r.closed(5, i, 'v');
    }
    expect([r.opensOn(2, 131_073, 'a'), r.opensOn(5, 0, 'v'), r.opensOn(5, 1_023, 'v')]).toEqual([false, true, true]);
  });

  it('says whether a volunteer is in a session of another process, open or closed lately (its verdicts may still come)', () => {
    const r = new RemoteSessions();
    r.opened(2, 131_073, 'a');
    r.opened(2, 131_074, 'ba');
    expect([r.involves('a'), r.involves('ba'), r.involves('b')]).toEqual([true, true, false]);
    r.closed(2, 131_073, 'a');
    expect(r.involves('a')).toBe(true);
    for (let i = 0; i < 1_024; i++) {
      r.opened(5, i, 'v');
      r.closed(5, i, 'v');
    }
    expect([r.involves('a'), r.involves('v')]).toEqual([false, true]);
    r.endAll(2);
    expect(r.involves('ba')).toBe(false);
  });

  it("lets a volunteer's report go free once a kind and step, only in a session opened on it, and below the steps a session can have", () => {
    const r = new RemoteSessions();
    r.opened(2, 131_073, 'a');
    const free = (sessionId: number, volunteer: string, kind: 'digest' | 'logits', step: number) =>
      r.admitFree(2, sessionId, volunteer, kind, step, 100);
    expect([free(131_073, 'a', 'digest', 0), free(131_073, 'a', 'digest', 0), free(131_073, 'a', 'logits', 0)]).toEqual([
      true,
      false,
      true,
    ]);
    expect([free(131_073, 'a', 'digest', 5), free(131_073, 'a', 'digest', 4), free(131_073, 'a', 'digest', 100)]).toEqual([
      true,
      false,
      false,
    ]);
    // Not its session, not that process's, a made-up step.
    expect([free(131_073, 'b', 'digest', 1), r.admitFree(3, 131_073, 'a', 'digest', 6, 100), free(131_073, 'a', 'digest', -1)]).toEqual([
      false,
      false,
      false,
    ]);
    r.closed(2, 131_073, 'a');
    expect(free(131_073, 'a', 'digest', 6)).toBe(true); // owed up to its end
  });

  it('bounds a session’s free reports by the steps its open said (and the mesh loop’s lead), open or closed; the model’s positions where it said none', () => {
    const r = new RemoteSessions();
    r.opened(2, 7, 'a', 4);
    r.opened(2, 8, 'a');
    const free = (sessionId: number, step: number) => r.admitFree(2, sessionId, 'a', 'digest', step, 100);
    const last = 4 + MESH_AHEAD;
    expect([free(7, 0), free(7, last), free(7, last + 1)]).toEqual([true, true, false]);
    // Said none (an older server): bounded by maxSteps alone, as before (where it stands said far enough on).
    r.progressed(2, 8, 96);
    expect([free(8, 50), free(8, 99), free(8, 100)]).toEqual([true, true, false]);
    r.closed(2, 7, 'a');
    expect(r.admitFree(2, 7, 'a', 'logits', last + 1, 100)).toBe(false);
    expect(r.admitFree(2, 7, 'a', 'logits', last, 100)).toBe(true);
  });

  it('once a session closed on a volunteer saying the steps it ran, bounds its free reports by those and the lead, not by what its open said', () => {
    const r = new RemoteSessions();
    // Opened for 480 steps, ended after 3 (the requester went away), on 'a'; 'b', replaced at step 1, closed then.
    r.opened(2, 9, 'a', 480);
    r.opened(2, 9, 'b', 480);
    r.closed(2, 9, 'b', 1);
    r.closed(2, 9, 'a', 3);
    const free = (v: string, step: number) => r.admitFree(2, 9, v, 'digest', step, 1_000);
    expect([free('a', 3 + MESH_AHEAD), free('a', 4 + MESH_AHEAD), free('a', 400)]).toEqual([true, false, false]);
    // Each its own: b's close bounds b, not the session's other replicas.
    expect([free('b', 1 + MESH_AHEAD), free('b', 2 + MESH_AHEAD)]).toEqual([true, false]);
    // A close that said nothing (a process of before): the open's steps, as before.
    r.opened(2, 10, 'a', 480);
    r.progressed(2, 10, 400);
    r.closed(2, 10, 'a');
    expect(r.admitFree(2, 10, 'a', 'digest', 400, 1_000)).toBe(true);
  });

  it('bounds free reports by where its process last said the session stands (and the lead, and 2 × PROGRESS_EVERY), never back', () => {
    const r = new RemoteSessions();
    r.opened(2, 11, 'a', 400);
    const free = (step: number) => r.admitFree(2, 11, 'a', 'digest', step, 1_000);
    const slack = MESH_AHEAD + 1 + 2 * PROGRESS_EVERY;
    // Before it said any: from step −1.
    expect([free(slack - 1), free(slack)]).toEqual([true, false]);
    r.progressed(2, 11, 40);
    expect([free(40 + slack), free(41 + slack)]).toEqual([true, false]);
    // An older word does not take it back; a session not open on our volunteers, or another process's, is not kept.
    r.progressed(2, 11, 8);
    r.progressed(3, 11, 300);
    r.progressed(2, 12, 300);
    r.opened(2, 12, 'a', 400);
    expect([r.admitFree(2, 11, 'a', 'logits', 40 + slack, 1_000), r.admitFree(2, 12, 'a', 'digest', slack, 1_000)]).toEqual([true, false]);
    // A volunteer opened midway (a spare, a repair: SessionOpen.replayTo) replays the steps before, each owed, free
    // (a review helper's find: only 11 of 300 were, with no member of the session here before).
    r.opened(2, 13, 'n', 400, 300);
    const replayed = Array.from({ length: 300 }, (_, step) => r.admitFree(2, 13, 'n', 'digest', step, 1_000));
    expect(replayed.filter(Boolean)).toHaveLength(300);
  });

  it('lets a volunteer join a session another process opened on it free once, and no session it is not in', () => {
    const r = new RemoteSessions();
    r.opened(2, 2_000_001, 'a');
    expect(r.admitFreeJoin(2, 2_000_001, 'a')).toBe(true);
    // Once: a second join of it is counted, as is a join of a session another process or another volunteer holds.
    expect(r.admitFreeJoin(2, 2_000_001, 'a')).toBe(false);
    expect(r.admitFreeJoin(3, 2_000_001, 'a')).toBe(false);
    expect(r.admitFreeJoin(2, 2_000_001, 'b')).toBe(false);
    expect(r.admitFreeJoin(2, 2_000_002, 'a')).toBe(false);
    // Closed on it: nothing left to join.
    r.opened(2, 2_000_003, 'a');
    r.closed(2, 2_000_003, 'a');
    expect(r.admitFreeJoin(2, 2_000_003, 'a')).toBe(false);
  });

  it('says which session of another process waits for a volunteer to join: not once answered, judged, closed, moved, or long ago', () => {
    const r = new RemoteSessions();
    const t0 = Date.now();
    r.opened(2, 2_000_001, 'a');
    r.opened(2, 2_000_002, 'a');
    r.opened(3, 3_000_001, 'a');
    r.opened(2, 2_000_001, 'b');
    expect(r.awaiting('a', t0)).toBe(2_000_001);
    // Joined (or refused, or judged a no-show there): the next one waits.
    r.answered(2, 2_000_001, 'a');
    expect(r.awaiting('a', t0)).toBe(2_000_002);
    // A repeated open of a session answered does not make it wait again.
    r.opened(2, 2_000_001, 'a');
    expect(r.awaiting('a', t0)).toBe(2_000_002);
    r.closed(2, 2_000_002, 'a');
    expect(r.awaiting('a', t0)).toBe(3_000_001);
    // Opened longer than AWAITED_FOR_MS ago: given up there, or its close lost; not judged.
    expect(r.awaiting('a', t0 + AWAITED_FOR_MS + 1_000)).toBeUndefined();
    expect(r.endAll(3)).toHaveLength(1);
    expect(r.awaiting('a', t0)).toBeUndefined();
    // b moved to another stage drops its sessions; one that left is forgotten.
    expect(r.awaiting('b', t0)).toBe(2_000_001);
    r.dropped('b');
    expect(r.awaiting('b', t0)).toBeUndefined();
    r.opened(2, 2_000_005, 'c');
    r.forget('c');
    expect(r.awaiting('c', t0)).toBeUndefined();
  });
});
