// A volunteer's record outlives its connection on one server (coordinator/record-memory.ts), over the real protocol:
// a real server on port 0, Node volunteers that compute with onnxruntime and speak Socket.IO (distinct clients on
// distinct 127.0.0.x addresses, each with its client key), requests over the HTTP API, the reference runner's tokens
// the oracle. Before, the record went with the connection: a liar two disagreements short of eviction connected
// again with its key and started clean, as often as it liked, and an honest volunteer that reloaded was a newcomer.
import { describe, expect, it, vi } from 'vitest';
import type { FaultBehaviour } from '../shared/swarm/faults.js';
import { fetchSwarmListing } from '../testing/swarm-listing.js';
import { BanList, EVICT_AFTER_DISAGREEMENTS } from './coordinator/reputation.js';
import { createLogger } from './log.js';
import { httpSwarm, WAIT_MS } from './testing/http-swarm.js';
import type { NodeVolunteer } from './testing/node-volunteer.js';

const { start, volunteer, readyCount, complete } = httpSwarm('record-resume');

/** Every output moved far off (challenges are answered honestly: it must become ready to lie). */
const LIAR: FaultBehaviour = { delayMs: 0, output: (_step, d) => d.map((x) => x + 3) };

/** Honest, 600 ms slower a step than a liar (a liar can always answer first: it need not compute). */
const SLOW_HONEST: FaultBehaviour = { delayMs: 600, output: (_step, d) => d };

/** The listing's entry of `v` (its counts, reputation and standing), once it has one. */
async function listed(url: string, v: NodeVolunteer) {
  return (await fetchSwarmListing(url)).list.find((x) => x.id === v.id);
}

/** A server whose log lines are kept, and its messages read back. */
function logged() {
  const lines: string[] = [];
  const logger = createLogger('info', { write: (chunk: string) => lines.push(...chunk.split('\n').filter((l) => l.length > 0)) });
  return { logger, messages: () => lines.map((l) => (JSON.parse(l) as { msg?: string }).msg ?? '') };
}

describe("a volunteer's record outlives its connection (one server)", () => {
  it(`a liar that connects again with its key resumes its record: evicted at its ${EVICT_AFTER_DISAGREEMENTS}rd disagreement, not given a clean one`, async () => {
    const { logger, messages } = logged();
    const { url, expected } = await start(1, 3, { logger });
    volunteer(url, '127.0.0.40');
    volunteer(url, '127.0.0.41');
    const liar = volunteer(url, '127.0.0.42', { clientKey: 'liar-key-0001', fault: LIAR });
    await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(3);
    // Two tokens: its two outputs outvoted, two disagreements and none agreeing (reputation 0.25), one short.
    const first = await complete(url, 2);
    expect(first.body.webswarm?.tokens).toEqual(expected.slice(0, 2));
    await expect.poll(async () => (await listed(url, liar))?.disagreed, { timeout: WAIT_MS }).toBe(2);
    expect(liar.errors.map((e) => e.code)).not.toContain('ERR_EVICTED');
    await liar.close();
    await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(2);
    // Back with the same key (and address): its record with it, before it has computed anything.
    const again = volunteer(url, '127.0.0.42', { clientKey: 'liar-key-0001', fault: LIAR });
    await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(3);
    const resumed = await listed(url, again);
    expect(resumed).toMatchObject({ agreed: 0, disagreed: 2, established: false });
    expect(messages().some((m) => m.startsWith(`volunteer ${again.id} resumes its record (0 agreed, 2 disagreed`))).toBe(true);
    // One more lie and it is out, its key and address banned (before: two more lies, and then as many again).
    const second = await complete(url, 2);
    expect(second.body.webswarm?.tokens).toEqual(expected.slice(0, 2));
    await expect.poll(() => again.errors.map((e) => e.code), { timeout: WAIT_MS }).toContain('ERR_EVICTED');
    const banned = volunteer(url, '127.0.0.42', { clientKey: 'liar-key-0001', fault: LIAR });
    await expect.poll(() => banned.errors.map((e) => e.code), { timeout: WAIT_MS }).toContain('ERR_BANNED');
  });

  it('a liar that opens its next connection before it closes the last shares the open one’s record: evicted all the same', async () => {
    const { url, expected } = await start(1, 3);
    volunteer(url, '127.0.0.40');
    volunteer(url, '127.0.0.41');
    const liar = volunteer(url, '127.0.0.42', { clientKey: 'liar-key-0002', fault: LIAR });
    await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(3);
    expect((await complete(url, 2)).body.webswarm?.tokens).toEqual(expected.slice(0, 2));
    await expect.poll(async () => (await listed(url, liar))?.disagreed, { timeout: WAIT_MS }).toBe(2);
    // Its next connection says hello while the first is still open (nothing is remembered yet)...
    const next = volunteer(url, '127.0.0.42', { clientKey: 'liar-key-0002', fault: LIAR });
    await expect.poll(async () => (await listed(url, next))?.ready, { timeout: WAIT_MS }).toBe(true);
    expect(await listed(url, next)).toMatchObject({ agreed: 0, disagreed: 2 });
    // ...then the first goes: the next lie evicts it, and bans its key.
    await liar.close();
    await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(3);
    expect((await complete(url, 2)).body.webswarm?.tokens).toEqual(expected.slice(0, 2));
    await expect.poll(() => next.errors.map((e) => e.code), { timeout: WAIT_MS }).toContain('ERR_EVICTED');
  });

  it('a liar that lies and leaves before the honest reports come: its late disagreements count, and the third bans its key', async () => {
    const { url, expected } = await start(1, 3);
    volunteer(url, '127.0.0.40', { fault: SLOW_HONEST });
    volunteer(url, '127.0.0.41', { fault: SLOW_HONEST });
    const KEY = 'liar-leaves-0001';
    // Each connection reports its first (lying) output and closes 50 ms later, long before the step is decided.
    for (let i = 0; i < EVICT_AFTER_DISAGREEMENTS; i++) {
      const v: NodeVolunteer = volunteer(url, '127.0.0.42', {
        clientKey: KEY,
        fault: LIAR,
        tamper: (m) => {
          setTimeout(() => v.socket.disconnect(), 50);
          return m;
        },
      });
      await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(3);
      expect((await complete(url, 2)).body.webswarm?.tokens).toEqual(expected.slice(0, 2));
      await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(2);
      expect(v.errors.map((e) => e.code)).not.toContain('ERR_BANNED');
    }
    // Its third late disagreement put its record over the line: its key and address are banned (before: every
    // connection came back clean, never evicted, never banned; the lies counted under ids already gone).
    const next = volunteer(url, '127.0.0.42', { clientKey: KEY, fault: LIAR });
    await expect.poll(() => next.errors.map((e) => e.code), { timeout: WAIT_MS }).toContain('ERR_BANNED');
  });

  it('a liar that lies, leaves, and closes a never-proven second connection of its key before the vote lands: still banned at the third lie', async () => {
    const { url, expected } = await start(1, 3);
    const slower: FaultBehaviour = { delayMs: 3000, output: (_step, d) => d };
    volunteer(url, '127.0.0.40', { fault: slower });
    volunteer(url, '127.0.0.41', { fault: slower });
    const KEY = 'liar-sibling-0001';
    for (let i = 0; i < EVICT_AFTER_DISAGREEMENTS; i++) {
      let fired = false;
      const v: NodeVolunteer = volunteer(url, '127.0.0.42', {
        clientKey: KEY,
        fault: LIAR,
        tamper: (m) => {
          if (fired) return m;
          fired = true;
          // Lie, then leave; a second connection of its key, which never proves a stage, leaves after it, long before
          // the honest reports decide the step. Before, nobody remembered the record the late vote counted into.
          setTimeout(() => v.socket.disconnect(), 50);
          const twin = volunteer(url, '127.0.0.43', { clientKey: KEY, challenges: 'never' });
          setTimeout(() => void twin.close(), 600);
          return m;
        },
      });
      await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(3);
      expect((await complete(url, 2)).body.webswarm?.tokens).toEqual(expected.slice(0, 2));
      await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(2);
    }
    const next = volunteer(url, '127.0.0.42', { clientKey: KEY, fault: LIAR });
    await expect.poll(() => next.errors.map((e) => e.code), { timeout: WAIT_MS }).toContain('ERR_BANNED');
  });

  it('two honest tabs of one browser: sessions missed count each tab its own, so 2 missed by one and 1 by the other evict neither', async () => {
    const { logger, messages } = logged();
    const { url } = await start(1, 3, { logger });
    for (const i of [40, 41, 46]) volunteer(url, `127.0.0.${i}`);
    const KEY = 'honest-tabs-0002';
    // A tab throttled in the background misses its first two sessions; the other tab misses its first one.
    const missedBy = new Set<number>();
    const misses = (most: number) => {
      const own = new Set<number>();
      return (m: { sessionId: number }) => {
        if (own.has(m.sessionId) || (own.size < most && !missedBy.has(m.sessionId))) {
          own.add(m.sessionId);
          missedBy.add(m.sessionId);
          return false;
        }
        return true;
      };
    };
    const a = volunteer(url, '127.0.0.44', { clientKey: KEY, joins: misses(2) });
    const b = volunteer(url, '127.0.0.45', { clientKey: KEY, joins: misses(1) });
    await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(5);
    const strikes = () => messages().filter((m) => /no-shows in its last/.test(m)).length;
    for (let i = 0; i < 30 && strikes() < 3; i++) await complete(url, 1);
    expect(strikes()).toBe(3);
    // Before (one window for the key's tabs): the third strike among them evicted both and banned key and address.
    expect([...a.errors, ...b.errors].map((e) => e.code)).toEqual([]);
    await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(5);
  });

  it('a tab two strikes short of eviction, closed beside another tab of its key: the key keeps its strikes, and the next tab’s first miss evicts it', async () => {
    const { logger, messages } = logged();
    const { url } = await start(1, 3, { logger });
    for (const i of [50, 51, 52]) volunteer(url, `127.0.0.${i}`);
    const KEY = 'cycling-tabs-0003';
    // One tab of the key stays open and joins; the others never join a session they are given.
    const kept = volunteer(url, '127.0.0.53', { clientKey: KEY });
    const first = volunteer(url, '127.0.0.54', { clientKey: KEY, joins: false });
    await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(5);
    const strikesOf = (v: NodeVolunteer) => messages().filter((m) => m.startsWith(`volunteer ${v.id} did not join`)).length;
    for (let i = 0; i < 40 && strikesOf(first) < 2; i++) await complete(url, 1);
    expect(strikesOf(first)).toBe(2);
    await first.close();
    // A "sink" tab of the key that joins everything, opened first: the strikes are the key's, not handed to it (a
    // red-team find of the first version). Before, a fresh window beside the open tab: three more strikes, as often
    // as it opened a tab.
    volunteer(url, '127.0.0.56', { clientKey: KEY });
    const next = volunteer(url, '127.0.0.55', { clientKey: KEY, joins: false });
    await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(6);
    for (let i = 0; i < 40 && strikesOf(next) < 1; i++) await complete(url, 1);
    expect(strikesOf(next)).toBe(1);
    await expect.poll(() => next.errors.map((e) => e.code), { timeout: WAIT_MS }).toContain('ERR_EVICTED');
    expect(messages().some((m) => m.includes(`volunteer ${next.id} did not join`) && m.includes('(3 of 3 no-shows'))).toBe(true);
    // The eviction bans the key: its open tab is cut off too.
    await expect.poll(() => kept.errors.length, { timeout: WAIT_MS }).toBeGreaterThan(0);
  });

  it('a liar moved to another stage (an accomplice leaves to make it) just before it leaves: its late lies still count, banned at the third', async () => {
    const { url, expected } = await start(2, 3);
    const staged = async (v: NodeVolunteer) => {
      await expect.poll(() => v.stage, { timeout: WAIT_MS }).not.toBeNull();
      return v.stage as number;
    };
    // Stage 0: two honest and the accomplice; stage 1: three honest, 600 ms slower (one a spare), and the liar, which
    // joins stage 1 last (its address, the accomplice's, is on stage 0): the one a rebalance moves.
    expect(await staged(volunteer(url, '127.0.0.50'))).toBe(0);
    expect(await staged(volunteer(url, '127.0.0.52', { fault: SLOW_HONEST }))).toBe(1);
    expect(await staged(volunteer(url, '127.0.0.51'))).toBe(0);
    expect(await staged(volunteer(url, '127.0.0.53', { fault: SLOW_HONEST }))).toBe(1);
    let accomplice = volunteer(url, '127.0.0.60', { clientKey: 'accomplice-0001' });
    expect(await staged(accomplice)).toBe(0);
    expect(await staged(volunteer(url, '127.0.0.54', { fault: SLOW_HONEST }))).toBe(1);
    const KEY = 'liar-moved-0001';
    for (let round = 0; round < EVICT_AFTER_DISAGREEMENTS; round++) {
      let fired = false;
      const v: NodeVolunteer = volunteer(url, '127.0.0.60', {
        clientKey: KEY,
        fault: LIAR,
        tamper: (m) => {
          if (fired) return m;
          fired = true;
          // Its first lie sent: the accomplice leaves (stage 0 short: the liar, newest of stage 1, is moved there and
          // out of the route, a spare taking its place with its report still in the vote), then the liar leaves.
          const a = accomplice;
          setTimeout(() => a.socket.disconnect(), 30);
          setTimeout(() => v.socket.disconnect(), 150);
          return m;
        },
      });
      expect(await staged(v)).toBe(1);
      await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(7);
      for (let i = 0; i < 8 && !fired; i++) expect((await complete(url, 2)).body.webswarm?.tokens).toEqual(expected.slice(0, 2));
      expect(fired).toBe(true);
      await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(5);
      if (round + 1 === EVICT_AFTER_DISAGREEMENTS) break;
      expect(v.errors.map((e) => e.code)).not.toContain('ERR_BANNED');
      accomplice = volunteer(url, '127.0.0.60', { clientKey: 'accomplice-0001' });
      expect(await staged(accomplice)).toBe(0);
      await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(6);
    }
    // Before: 5 rounds, 5 lies, each counted nowhere, and the key came back clean every time.
    const next = volunteer(url, '127.0.0.60', { clientKey: KEY });
    await expect.poll(() => next.errors.map((e) => e.code), { timeout: WAIT_MS }).toContain('ERR_BANNED');
  });

  it('connections of one key opened before any lie share one record: the third lie among them evicts and cuts them all', async () => {
    const { url } = await start(1, 3);
    for (const i of [40, 41, 43]) volunteer(url, `127.0.0.${i}`);
    const tabs = [42, 44, 45].map((i) => volunteer(url, `127.0.0.${i}`, { clientKey: 'liar-tabs-0001', fault: LIAR }));
    await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(6);
    const codes = () => tabs.flatMap((t) => t.errors.map((e) => e.code));
    // One token a request: at most one of the tabs in a route (one client), one lie a request.
    for (let i = 0; i < 40 && !codes().includes('ERR_EVICTED'); i++) await complete(url, 1);
    expect(codes()).toContain('ERR_EVICTED');
    // A step a request: the steps the tabs computed are the lies they told, 3 in all however they fell among them.
    expect(tabs.reduce((n, t) => n + t.steps, 0)).toBe(EVICT_AFTER_DISAGREEMENTS);
    // The others cut off with it (its key is banned), after 3 lies in all (before: 2 a tab, 6, and nobody evicted).
    await expect
      .poll(() => tabs.filter((t) => t.errors.some((e) => e.code === 'ERR_EVICTED' || e.code === 'ERR_BANNED')).length, {
        timeout: WAIT_MS,
      })
      .toBe(3);
    await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(3);
  });

  it("an honest tab's short-lived second tab leaves no stale record behind: the reload resumes what the first tab earned", async () => {
    const { url, expected } = await start(1, 3);
    volunteer(url, '127.0.0.40');
    volunteer(url, '127.0.0.41');
    let n = 0;
    // One stray output at its very first step (a glitch), honest from then on.
    const glitchOnce: FaultBehaviour = { delayMs: 0, output: (_s, d) => (n++ === 0 ? d.map((x) => x + 3) : d) };
    const KEY = 'honest-tabs-0001';
    const tab = volunteer(url, '127.0.0.42', { clientKey: KEY, fault: glitchOnce });
    await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(3);
    expect((await complete(url, 2)).body.webswarm?.tokens).toEqual(expected.slice(0, 2));
    await expect.poll(async () => (await listed(url, tab))?.disagreed, { timeout: WAIT_MS }).toBe(1);
    // A second tab of the same browser says hello and is closed before it votes.
    const second = volunteer(url, '127.0.0.43', { clientKey: KEY });
    await expect.poll(() => second.id, { timeout: WAIT_MS }).not.toBeNull();
    await second.close();
    for (let i = 0; i < 3; i++) expect((await complete(url)).body.webswarm?.tokens).toEqual(expected);
    await expect.poll(async () => (await listed(url, tab))?.established, { timeout: WAIT_MS }).toBe(true);
    const earned = await listed(url, tab);
    await tab.close();
    await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(2);
    const reloaded = volunteer(url, '127.0.0.42', { clientKey: KEY });
    await expect.poll(async () => (await listed(url, reloaded))?.ready, { timeout: WAIT_MS }).toBe(true);
    // Before: the second tab's copy of the early record (1 agreed, 1 disagreed) was kept, not established.
    expect(await listed(url, reloaded)).toMatchObject({ agreed: earned?.agreed, disagreed: 1, established: true });
  });

  it('a liar back after its ban resumes its record over the line: evicted at its next disagreement, not at the agreement before it', async () => {
    const { url, expected } = await start(1, 3);
    volunteer(url, '127.0.0.40');
    volunteer(url, '127.0.0.41');
    const lying = { on: true };
    const TOGGLED: FaultBehaviour = { delayMs: 0, output: (_step, d) => (lying.on ? d.map((x) => x + 3) : d) };
    const liar = volunteer(url, '127.0.0.42', { clientKey: 'liar-key-0003', fault: TOGGLED });
    await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(3);
    expect((await complete(url, 3)).body.webswarm?.tokens).toEqual(expected.slice(0, 3));
    await expect.poll(() => liar.errors.map((e) => e.code), { timeout: WAIT_MS }).toContain('ERR_EVICTED');
    await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(2);
    // Its 10-minute ban has run out: BanList.banned, the one clock a ban reads, says so (waiting 10 minutes is all
    // this stands in for; the server, its record memory and every volunteer run as they do).
    const expired = vi.spyOn(BanList.prototype, 'banned').mockReturnValue(false);
    try {
      lying.on = false;
      const back = volunteer(url, '127.0.0.42', { clientKey: 'liar-key-0003', fault: TOGGLED });
      await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(3);
      expect(await listed(url, back)).toMatchObject({ agreed: 0, disagreed: 3 });
      // Honest for a request: its agreements count, and it stays (before: evicted at the first agreement, its record
      // (1 agreed, 3 disagreed) still over the line).
      expect((await complete(url, 2)).body.webswarm?.tokens).toEqual(expected.slice(0, 2));
      await expect.poll(async () => (await listed(url, back))?.agreed, { timeout: WAIT_MS }).toBe(2);
      expect(back.errors.map((e) => e.code)).toEqual([]);
      // One lie more, and it is out again.
      lying.on = true;
      expect((await complete(url, 1)).body.webswarm?.tokens).toEqual(expected.slice(0, 1));
      await expect.poll(() => back.errors.map((e) => e.code), { timeout: WAIT_MS }).toContain('ERR_EVICTED');
    } finally {
      expired.mockRestore();
    }
  });

  it('an honest volunteer that reloads is established again once it proves its stage; another key from its address is not', async () => {
    const { url, expected } = await start(1, 3);
    const vs = [40, 41, 42].map((i) => volunteer(url, `127.0.0.${i}`, { clientKey: `honest-key-${i}` }));
    await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(3);
    // Two requests of 6 tokens: 12 agreements each, established (10 at a reputation of 0.8 or more).
    for (let i = 0; i < 2; i++) expect((await complete(url)).body.webswarm?.tokens).toEqual(expected);
    await expect.poll(async () => (await fetchSwarmListing(url)).list.filter((v) => !v.established), { timeout: WAIT_MS }).toEqual([]);
    const agreed = (await listed(url, vs[0] as NodeVolunteer))?.agreed ?? 0;
    expect(agreed).toBeGreaterThanOrEqual(10);
    await vs[0]?.close();
    await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(2);
    // The reload: same key, same address. Established as soon as it is ready, no request needed.
    const reloaded = volunteer(url, '127.0.0.40', { clientKey: 'honest-key-40' });
    await expect.poll(async () => (await listed(url, reloaded))?.established, { timeout: WAIT_MS }).toBe(true);
    expect(await listed(url, reloaded)).toMatchObject({ agreed, disagreed: 0, ready: true });
    // Its page is told the record it resumed.
    await expect.poll(() => reloaded.lastScore?.agreed, { timeout: WAIT_MS }).toBe(agreed);
    // Another client behind the same address (its own key) starts as a newcomer: a record never passes by address.
    await reloaded.close();
    const stranger = volunteer(url, '127.0.0.40', { clientKey: 'someone-else-40' });
    await expect.poll(async () => (await listed(url, stranger))?.ready, { timeout: WAIT_MS }).toBe(true);
    expect(await listed(url, stranger)).toMatchObject({ agreed: 0, disagreed: 0, established: false });
  });
});
