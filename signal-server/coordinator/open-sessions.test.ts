import { describe, expect, it } from 'vitest';
import { MAX_SESSIONS_PER_REPLICA } from '../../shared/swarm/replica-core.js';
import type { VolunteerLink } from './coordinator-types.js';
import { OpenSessions } from './open-sessions.js';

/** A link that keeps what was sent through it. */
function link(): VolunteerLink & { sent: string[] } {
  const sent: string[] = [];
  return { sent, send: (event: string) => void sent.push(event), disconnect: () => {} } as VolunteerLink & { sent: string[] };
}

const open = (sessionId: number) => ({ sessionId, stage: 0, replica: 0, prev: [], next: [], replayTo: 0 });

describe('OpenSessions: what a volunteer was told, and its refusals as full judged by it', () => {
  it('judges a refusal against the sessions open when that one was sent, in the order sent', () => {
    const o = new OpenSessions();
    const l = link();
    const w = o.watch(l);
    for (let id = 1; id <= MAX_SESSIONS_PER_REPLICA; id++) w.send('session:open', open(id));
    // Sent while it held 16: the replica refuses it, and may.
    w.send('session:open', open(100));
    // One closed before the next is sent: that one it had room for.
    w.send('session:close', { sessionId: 1 });
    w.send('session:open', open(101));
    expect(l.sent.length).toBe(MAX_SESSIONS_PER_REPLICA + 3);
    expect(o.refusedFull(100)).toEqual({ held: MAX_SESSIONS_PER_REPLICA, limit: MAX_SESSIONS_PER_REPLICA, honest: true });
    // Sent when 16 were counted, 100 among them, which it turned out not to hold.
    expect(o.refusedFull(101)).toEqual({ held: MAX_SESSIONS_PER_REPLICA - 1, limit: MAX_SESSIONS_PER_REPLICA, honest: false });
    expect(o.verdict(100)?.honest).toBe(true);
    expect(o.verdict(101)?.honest).toBe(false);
    // Refused sessions are not held: 15 open.
    expect(o.size).toBe(MAX_SESSIONS_PER_REPLICA - 1);
  });

  it("judges against the volunteer's own limit when each session was sent, not when it refuses", () => {
    let limit = 2;
    const o = new OpenSessions(() => limit);
    const w = o.watch(link());
    for (const id of [1, 2, 3]) w.send('session:open', open(id));
    // A limit of 2 (a stage with graph capture): the third was sent while it held 2, its due; the second was not.
    expect(o.refusedFull(3)).toEqual({ held: 2, limit: 2, honest: true });
    // Its limit lowered afterwards changes nothing for a session sent before.
    limit = 1;
    expect(o.refusedFull(2)).toEqual({ held: 1, limit: 2, honest: false });
    w.send('session:open', open(4));
    expect(o.refusedFull(4)).toEqual({ held: 1, limit: 1, honest: true });
  });

  it('counts a session opened again once, and knows nothing of a session never opened on it', () => {
    const o = new OpenSessions();
    const w = o.watch(link());
    w.send('session:open', open(7));
    w.send('session:open', open(7));
    expect(o.size).toBe(1);
    expect(o.refusedFull(8)).toBeUndefined();
    expect(o.verdict(8)).toBeUndefined();
    expect(o.refusedFull(7)).toEqual({ held: 0, limit: MAX_SESSIONS_PER_REPLICA, honest: false });
  });
});
