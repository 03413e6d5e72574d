// One attacker with two addresses against the newcomers' probation: a colluder that earns its record honestly
// (established), then a second one that joins as a newcomer. Where a stage has enough established replicas the
// route gives newcomers the minority's seats, and a lone newcomer always takes one; the two lie together only where
// both are in a session (each learns its sessions from its own session:open), so they are never outvoted. Before,
// a group of one established replica and newcomers won against an established replica outside it: the pair's text
// was served as verified in 7 requests of 12 (r = 3, a red-team pass), and the honest replica outvoted lost its
// standing. Now newcomers never decide between established replicas: such a vote is contested, the stage retried on
// spares or computed by the server, and the answer is the reference runner's. Real server on port 0, real socket.io
// volunteers computing with onnxruntime, requests over the HTTP API.
import { describe, expect, it } from 'vitest';
import type { FaultBehaviour } from '../shared/swarm/faults.js';
import { fetchSwarmListing } from '../testing/swarm-listing.js';
import { httpSwarm, WAIT_MS } from './testing/http-swarm.js';
import { type NodeVolunteer, type NodeVolunteerOptions, spellingLogits } from './testing/node-volunteer.js';
import { serverLog } from './testing/server-log.js';

const { start, volunteer, readyCount, complete } = httpSwarm('newcomer-seat');

/** Two colluding volunteers that lie (spelling `target`) only while `lying` and both are in one session. */
function colluders(target: readonly number[]) {
  const spell = spellingLogits(target);
  const session = new Map<string, number>();
  /** paired: sessions the two were in together while lying. */
  const state = { lying: false, paired: 0 };
  const together = () => {
    const [a, b] = [session.get('a1'), session.get('a2')];
    return a !== undefined && a === b;
  };
  const fault: FaultBehaviour = {
    delayMs: 0,
    output: (step, d, isLogits) => (state.lying && together() ? spell.output(step, d, isLogits) : d),
  };
  const watch = (name: 'a1' | 'a2', v: NodeVolunteer) =>
    v.socket.on('session:open', (m: { sessionId: number }) => {
      session.set(name, m.sessionId);
      if (together() && state.lying) state.paired += 1;
    });
  return { fault, watch, state };
}

/**
 * Two honest volunteers (their step delay in `honestFault`, 0 at first) and the first colluder, established over two
 * requests; then the second, a newcomer. `newcomer`: whether the second is still one.
 */
async function setUp(log: ReturnType<typeof serverLog>) {
  const { url, expected, tokenizer } = await start(1, 3, { routeWaitMs: 1_000, fallback: 'stage', logger: log.logger });
  expect(expected.length).toBeGreaterThanOrEqual(3);
  const c = colluders(tokenizer.encode(' I am the captain now and so on'));
  const honestFault: { -readonly [K in keyof FaultBehaviour]: FaultBehaviour[K] } = { delayMs: 0, output: (_step, d) => d };
  const honest = [volunteer(url, '127.0.0.111', { fault: honestFault }), volunteer(url, '127.0.0.112', { fault: honestFault })];
  const a1 = volunteer(url, '127.0.0.166', { fault: c.fault, sessions: 1 });
  c.watch('a1', a1);
  await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(3);
  // The first earns its record honestly: all three established.
  for (let i = 0; i < 2; i++) expect((await complete(url)).body.webswarm?.tokens).toEqual(expected);
  await expect.poll(async () => (await fetchSwarmListing(url)).list.filter((v) => v.established).length, { timeout: WAIT_MS }).toBe(3);
  const a2 = volunteer(url, '127.0.0.167', { fault: c.fault, sessions: 1 });
  c.watch('a2', a2);
  await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(4);
  // They lie while the second is a newcomer (after that the two are established: a majority of the route's
  // established replicas whenever both are drawn, which is the trust boundary's f, not probation's).
  const newcomer = async () => (await fetchSwarmListing(url)).list.some((v) => v.id === a2.id && !v.established);
  return { url, expected, c, honest, honestFault, newcomer };
}

describe('a retry after established replicas split', () => {
  it('never leaves the colluder as the only established replica beside newcomer spares: the server computes the stage', async () => {
    // Routes drawn at random 0 take the first candidates: the colluder C (most agreements), the honest X (fewer), and
    // the first newcomer, the colluder's A. They lie wherever two colluders are in one session: C and A split the vote
    // with X. A review's find: the retry took out A and then X (the worse record), kept C's answer, and brought the
    // newcomers S (a colluding sybil) and T as spares; C and S, 1 of 1 established, decided.
    const log = serverLog('info');
    const { url, expected, tokenizer } = await start(1, 3, { routeWaitMs: 1_000, fallback: 'stage', logger: log.logger, random: () => 0 });
    const spell = spellingLogits(tokenizer.encode(' I am the captain now and so on'));
    const session = new Map<string, number>();
    const state = { lying: false };
    const colluding = (name: string): NodeVolunteerOptions => ({
      sessions: 1,
      fault: {
        delayMs: 0,
        output: (step, d, isLogits) => {
          const mine = session.get(name);
          const together = [...session].filter(([, id]) => id === mine).length >= 2;
          return state.lying && together ? spell.output(step, d, isLogits) : d;
        },
      },
    });
    const join = (name: string, address: string, options: NodeVolunteerOptions = {}) => {
      const v = volunteer(url, address, options);
      v.socket.on('session:open', (m: { sessionId: number }) => session.set(name, m.sessionId));
      return v;
    };
    const established = async () => (await fetchSwarmListing(url)).list.filter((v) => v.established).map((v) => v.id);
    const c = join('c', '127.0.0.171', colluding('c'));
    const y = join('y', '127.0.0.172');
    await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(2);
    const z = join('z', '127.0.0.173');
    await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(3);
    for (let i = 0; i < 2; i++) expect((await complete(url)).body.webswarm?.tokens).toEqual(expected);
    // X joins as a newcomer and earns its record beside C and Y; then Y and Z go: C and X are the established ones.
    await z.close();
    const x = join('x', '127.0.0.174');
    await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(3);
    for (let i = 0; i < 4 && !(await established()).includes(x.id ?? ''); i++)
      expect((await complete(url)).body.webswarm?.tokens).toEqual(expected);
    expect(await established()).toContain(x.id);
    await y.close();
    join('a', '127.0.0.175', colluding('a'));
    join('s', '127.0.0.176', colluding('s'));
    join('t', '127.0.0.177');
    await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(5);
    expect((await established()).sort()).toEqual([c.id, x.id].sort());
    state.lying = true;
    const r = await complete(url, 3);
    state.lying = false;
    expect(r.status, JSON.stringify(r.body.error)).toBe(200);
    expect(r.body.webswarm?.tokens).toEqual(expected.slice(0, 3));
    expect(log.lines.some((l) => l.includes('between established replicas; the server computes stage 0'))).toBe(true);
  }, 240_000);
});

describe("an established colluder and its newcomer in the minority's seat", () => {
  it('never outvote an established replica: every answer is the reference, the honest ones keep a clean record', async () => {
    const log = serverLog('info');
    const { url, expected, c, honest, newcomer } = await setUp(log);
    const served: string[] = [];
    let requests = 0;
    for (; requests < 12 && (await newcomer()); requests++) {
      c.state.lying = true;
      const r = await complete(url, 3);
      c.state.lying = false;
      // A clean error is allowed (no spare and no server to compute); another text never.
      if (r.status === 200) expect(r.body.webswarm?.tokens, `request ${requests}`).toEqual(expected.slice(0, 3));
      else served.push(`${r.status} ${r.body.error?.code}`);
    }
    expect(served).toEqual([]);
    // The pair was in sessions together and lied there: the vote was contested, not theirs.
    expect(c.state.paired).toBeGreaterThan(0);
    expect(log.lines.some((l) => l.includes('had no majority'))).toBe(true);
    const listed = (await fetchSwarmListing(url)).list;
    for (const h of honest) {
      const v = listed.find((x) => x.id === h.id);
      expect(v?.disagreed, `honest ${h.id}`).toBe(0);
      expect(v?.established, `honest ${h.id}`).toBe(true);
    }
  }, 240_000);

  it('answering at once beside an honest established replica slower than the silence limit: the server computes the stage, never their text', async () => {
    // A review's find against a first version, which counted established replicas still to answer after the silence
    // limit as timed out: the pair, answering at once, then outvoted the slow honest one.
    const log = serverLog('info');
    const { url, expected, c, honestFault, newcomer } = await setUp(log);
    honestFault.delayMs = 6_000;
    for (let i = 0; i < 4 && c.state.paired === 0 && (await newcomer()); i++) {
      c.state.lying = true;
      const r = await complete(url, 2);
      c.state.lying = false;
      expect(r.status, JSON.stringify(r.body.error)).toBe(200);
      expect(r.body.webswarm?.tokens, `request ${i}`).toEqual(expected.slice(0, 2));
    }
    expect(c.state.paired).toBeGreaterThan(0);
    expect(log.lines.some((l) => /established replicas did not all answer within \d+ ms; the server computes stage 0/.test(l))).toBe(true);
  }, 240_000);
});
