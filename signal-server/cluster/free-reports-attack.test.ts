// A volunteer of server A in a session of server B (a cluster: a real
// redis-server, real servers on port 0, a Node volunteer that computes and
// speaks Socket.IO) floods step reports for steps its session will never have
// (found by a red-team pass). A relays a replica's reports to B free of the
// socket's event budget when they are owed; before, "owed" was bounded by the
// model's positions, not the session's steps, so a 20-token session let a
// replica send 930 reports (768 KiB of logits each) free: none dropped, the
// socket kept, 366 MB into B's inbox. Now B says the session's steps in its
// open, A takes no more free than those, and the rest spend the budget.
import { describe, expect, it } from 'vitest';
import type { SessionOpen } from '../../shared/protocol/messages.js';
import type { SignalServer } from '../server.js';
import { clusterTestFile, complete, procOf, startCluster, until, watchChannel } from '../testing/cluster-servers.js';
import { NodeVolunteer } from '../testing/node-volunteer.js';

const MODEL = 'fixtures/models/tiny-untied';
const VOCAB = 2048;
const TOKENS = 20;
const f = clusterTestFile('free-reports');
const { servers, volunteers } = f;

async function dropped(s: SignalServer): Promise<number> {
  const text = await (await fetch(`${s.address().url}/metrics`)).text();
  return Number(text.match(/^webswarm_socket_events_dropped_total (\d+)/m)?.[1] ?? 'NaN');
}

/** Two servers and one volunteer on A, slowed (50 ms a step) so that a session of B stays live while it floods; ready at B. */
async function slowVolunteerOnA(clientKey: string) {
  // One stage: the volunteer is the last stage's replica, whose logits are owed too.
  const c = await startCluster(2, f.redisUrl, { model: MODEL, stages: 1, redundancy: 1, cache: f.cache });
  servers.push(...c.servers);
  const [a, b] = c.servers as [SignalServer, SignalServer];
  const v = new NodeVolunteer(a.address().url, { clientKey, fault: { delayMs: 50, output: (_s, d) => d } });
  volunteers.push(v);
  await until('B counts it ready', () => b.coordinator?.volunteers().filter((x) => x.ready).length === 1);
  return { c, a, b, v };
}

/** Sends a digest and a full row of logits for each step in [from, to) of the session; the reports sent. */
function flood(v: NodeVolunteer, sessionId: number, from: number, to: number): number {
  const logits = new ArrayBuffer(VOCAB * 4);
  let sent = 0;
  for (let step = from; step < to; step++, sent += 2) {
    v.socket.emit('step:digest', { sessionId, step, stage: 0, digest: [1], input: [1], received: [], resets: 0, computeMs: 1 });
    v.socket.emit('step:logits', { sessionId, step, logits, resets: 0 });
  }
  return sent;
}

describe("a volunteer's reports relayed to another server's session", () => {
  it('go free only up to the steps the session has: a flood past them spends the socket’s budget, and the request is answered', async () => {
    const { c, a, b, v } = await slowVolunteerOnA('report-flooder-1');
    const maxPositions = b.coordinator?.maxPositions ?? 0;
    const inbox = await watchChannel(f.redisUrl, `${c.prefix}:proc:${procOf(b)}`);
    const opened: SessionOpen[] = [];
    let sent = 0;
    v.socket.once('session:open', (m: SessionOpen) => {
      opened.push(m);
      sent = flood(v, m.sessionId, 50, maxPositions + 3);
    });
    const result = await complete(b, 'It is a truth', TOKENS);
    // B's open says the session's steps: its prompt's and the tokens it may generate.
    expect(opened[0]?.steps).toBeGreaterThanOrEqual(TOKENS);
    expect(opened[0]?.steps).toBeLessThan(50);
    expect(sent).toBeGreaterThan(900);
    // Every report of the flood is past the session's steps: none is free, so A's budget (a burst of 400) drops
    // the rest or cuts the socket off; before, all 930 went through free.
    const cut = () => !v.socket.connected;
    await until('A drops the flood or cuts it off', () => cut() || (inbox.counts.get('report') ?? 0) > 0, 10_000);
    const droppedA = await dropped(a);
    expect(droppedA > 0 || cut(), `dropped ${droppedA}, connected ${v.socket.connected}`).toBe(true);
    expect(inbox.counts.get('report') ?? 0).toBeLessThan(sent);
    await inbox.stop();
    // The request was answered whether or not the flooder stayed for its end.
    expect([200, 503]).toContain(result.status);
  });

  it('once the session ended early, go free only up to the steps it ran (its close says them), not those its open said', async () => {
    const { c, a, b, v } = await slowVolunteerOnA('report-early-end-1');
    const opened: SessionOpen[] = [];
    v.socket.on('session:open', (m: SessionOpen) => opened.push(m));
    const closed = new Promise<number>((r) => v.socket.once('session:close', ({ sessionId }) => r(sessionId)));
    // 480 tokens asked, the requester gone after a few.
    const cancel = new AbortController();
    const asked = fetch(`${b.address().url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'It is', max_tokens: 480, temperature: 0 }),
      signal: cancel.signal,
    }).catch(() => null);
    await until('a few steps ran', () => v.steps >= 3);
    cancel.abort();
    await asked;
    const sessionId = await closed;
    const said = opened[0]?.steps ?? 0;
    expect(said).toBeGreaterThanOrEqual(480);
    const inbox = await watchChannel(f.redisUrl, `${c.prefix}:proc:${procOf(b)}`);
    const droppedBefore = await dropped(a);
    const sent = flood(v, sessionId, v.steps + 10, said);
    await until('A drops the flood or cuts it off', () => !v.socket.connected || (inbox.counts.get('report') ?? 0) >= 400, 10_000).catch(
      () => {},
    );
    await new Promise((r) => setTimeout(r, 500));
    const seen = { relayed: inbox.counts.get('report') ?? 0, dropped: (await dropped(a)) - droppedBefore, connected: v.socket.connected };
    await inbox.stop();
    expect(sent).toBeGreaterThan(900);
    // None past the steps it ran is free: A's budget (a burst of 400) drops the rest or cuts the socket off; before,
    // all 934 went through ({"sent":934,"relayed":938,"dropped":0,"connected":true}).
    expect(seen.relayed, JSON.stringify(seen)).toBeLessThan(sent / 2);
    expect(seen.dropped > 0 || !seen.connected, JSON.stringify(seen)).toBe(true);
  });

  it('in a live long session, sent all at once: free only as far as B said the session stands, the rest spend A’s budget', async () => {
    // Found by a red-team helper (2026-12-07): A could not see the step B was deciding, so every report up to the
    // session's steps went free at once: a replica of a 400-token session sent 298 MB of logits in 8 s through
    // Redis, nothing dropped. B now says where its session stands every PROGRESS_EVERY steps.
    const { c, a, b, v } = await slowVolunteerOnA('report-burst-1');
    const inbox = await watchChannel(f.redisUrl, `${c.prefix}:proc:${procOf(b)}`);
    const droppedBefore = await dropped(a);
    let sent = 0;
    v.socket.once('session:open', (m: SessionOpen) => {
      sent = flood(v, m.sessionId, 0, m.steps ?? 0);
    });
    const asked = complete(b, 'It is a truth', 400);
    await expect.poll(async () => !v.socket.connected || (await dropped(a)) > droppedBefore, { timeout: 20_000 }).toBe(true);
    await new Promise((r) => setTimeout(r, 1_000));
    const seen = {
      sent,
      relayed: inbox.counts.get('report') ?? 0,
      dropped: (await dropped(a)) - droppedBefore,
      connected: v.socket.connected,
    };
    await inbox.stop();
    expect(sent, JSON.stringify(seen)).toBeGreaterThan(700);
    // Past the first steps the flood was counted: dropped past the burst of 400, or the socket cut off, and not all
    // of it reached B; before, all of it went through free ({"sent":790,"relayed":829,"dropped":0,"connected":true}).
    expect(seen.dropped > 0 || !seen.connected, JSON.stringify(seen)).toBe(true);
    expect(seen.relayed, JSON.stringify(seen)).toBeLessThan(sent);
    expect([200, 503]).toContain((await asked).status);
  });

  it('take logits free only from a last stage’s replica, as one server does', async () => {
    const c = await startCluster(2, f.redisUrl, { model: MODEL, stages: 2, redundancy: 1, cache: f.cache });
    servers.push(...c.servers);
    const [a, b] = c.servers as [SignalServer, SignalServer];
    const vs = [0, 1].map((i) => new NodeVolunteer(a.address().url, { clientKey: `report-stage-${i}-volunteer` }));
    volunteers.push(...vs);
    await until('B counts both ready', () => b.coordinator?.volunteers().filter((x) => x.ready).length === 2);
    // What A would take free from each, asked while B's session is open on them (as its socket handler asks).
    const owed: Record<string, boolean> = {};
    for (const v of vs)
      v.socket.once('session:open', (m: SessionOpen) => {
        const id = v.id as string;
        for (const event of ['step:digest', 'step:logits'])
          owed[`stage ${m.stage} ${event}`] = a.coordinator?.owesReport(id, event, { sessionId: m.sessionId, step: 0 }) === true;
      });
    expect((await complete(b, 'It is a truth', 4)).status).toBe(200);
    expect(owed).toEqual({
      'stage 0 step:digest': true,
      'stage 0 step:logits': false,
      'stage 1 step:digest': true,
      'stage 1 step:logits': true,
    });
  });
});
