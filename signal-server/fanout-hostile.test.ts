// Optimistic quorum fan-out (FANOUT=majority) attacked over Socket.IO: a real
// server on port 0 and real-protocol Node volunteers computing on onnxruntime
// (their data-channel messages relayed by the server between linked peers),
// r = 3. A liar's receivers ask the others and outvote it; a silent sender costs
// its receivers one bounded wait; a receiver that floods its senders with wants,
// or asks as another, gets one resend and named refusals, and the requester
// gets the reference runner's tokens every time.
import { describe, expect, it } from 'vitest';
import type { SessionOpen } from '../shared/protocol/messages.js';
import { encodeWant } from '../shared/swarm/fanout.js';
import { faultBehaviour } from '../shared/swarm/faults.js';
import { httpSwarm } from './testing/http-swarm.js';
import type { NodeVolunteer } from './testing/node-volunteer.js';

const { start, complete, joinAll } = httpSwarm('fanouthostile');
const FANOUT = { fanout: 'majority' as const, stepTimeoutMs: 8_000 };

/** The tokens of a completion, and that it came back whole. */
async function tokensOf(url: string): Promise<number[]> {
  const res = await complete(url);
  expect(res.status, JSON.stringify(res.body.error)).toBe(200);
  return res.body.webswarm?.tokens ?? [];
}

describe('fan-out against hostile route members (r = 3, 3 stages, over Socket.IO)', () => {
  it('a lying stage-1 sender: its two receivers ask the third sender, the liar is outvoted, the reference tokens', async () => {
    const { url, expected } = await start(3, 3, FANOUT);
    // Stages are handed out in turn: volunteer 1 holds stage 1.
    const all = await joinAll(url, 9, 60, (i) => (i === 1 ? { fault: faultBehaviour('noise', 4) } : {}));
    const liar = all[1] as NodeVolunteer;
    expect(liar.stage).toBe(1);
    expect(await tokensOf(url)).toEqual(expected);
    // Two receivers of stage 2 count on it; each asked the one sender it was not assigned, once.
    const asks = all.filter((v) => v.stage === 2).flatMap((v) => v.wants);
    expect(asks).toHaveLength(2);
    expect(asks.every((w) => w.endsWith(' frames'))).toBe(true);
    expect(asks).not.toContain(`${liar.id} frames`);
  });

  it('a silent stage-0 sender: the tokens still come, each receiver asks once', async () => {
    const { url, expected } = await start(3, 3, FANOUT);
    const all = await joinAll(url, 9, 70, (i) => (i === 0 ? { fault: faultBehaviour('silent', 1) } : {}));
    expect(all[0]?.stage).toBe(0);
    expect(await tokensOf(url)).toEqual(expected);
    const asks = all.filter((v) => v.stage === 1).flatMap((v) => v.wants);
    expect(asks.length).toBeGreaterThanOrEqual(2);
    // Once per (receiver, sender) a session.
    for (const v of all) expect(new Set(v.wants).size).toBe(v.wants.length);
  });

  it('a receiver flooding its senders with wants, and asking as another replica: one resend each, the rest refused by name', async () => {
    const { url, expected } = await start(3, 3, FANOUT);
    let hostile: NodeVolunteer | null = null;
    let opened: SessionOpen | null = null;
    const copies = new Map<string, number>();
    const all = await joinAll(url, 9, 80, (i) =>
      i === 2
        ? {
            unreached: (m) => {
              opened = m;
              return [];
            },
            // With each of its reports, 40 wants to each sender (as itself, from step 0), and one as another replica.
            tamper: (m) => {
              const o = opened as SessionOpen | null;
              if (o !== null && hostile !== null)
                for (const to of o.prev) {
                  const as = (replica: number) =>
                    Buffer.from(encodeWant({ kind: 'frames', sessionId: m.sessionId, fromStep: 0, stage: 2, replica, era: 0 })).toString(
                      'base64',
                    );
                  for (let k = 0; k < 40; k++) hostile?.socket.emit('signal', { to, data: { f: as(o.replica) } });
                  hostile?.socket.emit('signal', { to, data: { f: as((o.replica + 1) % 3) } });
                }
              return m;
            },
          }
        : {},
    );
    hostile = all[2] as NodeVolunteer;
    expect(hostile.stage).toBe(2);
    hostile.socket.on('signal', ({ from }) => copies.set(from, (copies.get(from) ?? 0) + 1));
    expect(await tokensOf(url)).toEqual(expected);
    const senders = all.filter((v) => v.stage === 1);
    const refused = senders.flatMap((v) => v.rejections.map((r) => r.split(' ')[0]));
    expect(refused).toContain('ERR_WANT_REPEATED');
    expect(refused).toContain('ERR_NOT_LINKED');
    expect(refused.every((c) => c === 'ERR_WANT_REPEATED' || c === 'ERR_NOT_LINKED')).toBe(true);
    // What it got of each sender: every step at most twice (a resend once, then each step), never 40 times over.
    const steps = expected.length + 1;
    for (const s of senders) {
      // Subscribed by its first want: every sender sent it every step (and step 0 on, once, again); the last
      // step's copy from a sender it was not assigned may still be on its way when the answer is back.
      expect(copies.get(s.id ?? '') ?? 0).toBeGreaterThanOrEqual(expected.length - 1);
      expect(copies.get(s.id ?? '') ?? 0).toBeLessThanOrEqual(2 * steps + 2);
    }
  });
});
