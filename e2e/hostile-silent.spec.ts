// A neighbour that never connects: a volunteer tab of stage 0 of 2 that loads
// its stage, answers its challenge honestly and is routed, then never
// completes WebRTC signalling with anyone (it drops every `signal` event its
// page sends) while it says `session:joined` for every session it is given.
// Its neighbours are the three honest tabs of stage 1. r = 3: the two honest
// replicas of stage 0 are a majority without it, so stage 1 has what it needs
// to take a majority of inputs. The honest tabs must join anyway (within a
// bounded time), the request must answer the reference runner's tokens, and no
// honest tab may be counted a no-show, replaced or evicted because of the
// hostile one's silence; the fault is its own (a majority of stage 1 names it
// unreachable). Real Chromium tabs, a real server on port 0; the reference
// runner's tokens are the oracle.
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GREEDY } from '../shared/model/sampling.js';
import { type E2eSwarm, startE2eSwarm } from './harness.js';
import { SILENT_HOOKS } from './hostile-silent-page.js';

const PROMPT = 'It is a truth universally acknowledged, that a single man';
const TOKENS = 16;
/** Tabs fill the stages in order (0, 1, 0, 1, 0, 1): tab 0 is the hostile one, in stage 0. */
const HOSTILE = 0;
const HONEST = [1, 2, 3, 4, 5];
/** Both data paths in each stage (the hostile tab on the main thread, its script in its page). */
const pathOf = (i: number) => (i === HOSTILE || i === 3 || i === 4 ? 'main' : 'worker');
/** The tabs the hostile one is linked with (stage 1). */
const NEIGHBOURS = [1, 3, 5];
/** Requests in a row: three no-shows evict a volunteer, so three requests would push an honest tab out. */
const REQUESTS = 3;
/**
 * How long a session may take to have every replica joined. A neighbour's
 * connection times out after 20 s (web/net/peers.ts); an honest tab that waited
 * for the silent one would take that long. Generous for a loaded machine.
 */
const JOIN_BOUND_MS = 12_000;

/** The server's log lines (JSON, one a line). */
const lines: string[] = [];
let swarm: E2eSwarm | null = null;
const rig = {
  get e(): E2eSwarm {
    if (swarm === null) throw new Error('the swarm has not started');
    return swarm;
  },
  page(i: number): Page {
    return this.e.swarm.pages[i] as Page;
  },
};

beforeAll(async () => {
  swarm = await startE2eSwarm({
    volunteers: 6,
    stages: 2,
    redundancy: 3,
    dataPathOf: pathOf,
    logSink: { write: (chunk: string) => lines.push(...chunk.split('\n').filter((l) => l.length > 0)) },
  });
  await rig.page(HOSTILE).evaluate(SILENT_HOOKS);
});
afterAll(() => swarm?.close());

type Tab = { index: number; stage: number | null; volunteerId: string | null; state: string };

function tabs(): Promise<Tab[]> {
  return Promise.all(
    [HOSTILE, ...HONEST].map(async (index) => {
      const s = await rig.page(index).evaluate(() => window.webswarmVolunteer);
      return { index, stage: s?.stage ?? null, volunteerId: s?.volunteerId ?? null, state: s?.state ?? 'none' };
    }),
  );
}

/** The coordinator's messages (pino's `msg`). */
const messages = () => lines.map((l) => (JSON.parse(l) as { msg?: string }).msg ?? '');

describe('a neighbour that never completes WebRTC signalling but says it joined', () => {
  let before: Tab[] = [];
  let expected: number[] = [];

  it('has the layout the spec attacks', async () => {
    expected = await rig.e.expected(PROMPT, TOKENS, GREEDY);
    before = await tabs();
    expect(before.map((t) => t.stage)).toEqual([0, 1, 0, 1, 0, 1]);
    expect(before.map((t) => t.state)).toEqual(['ready', 'ready', 'ready', 'ready', 'ready', 'ready']);
  });

  it(`${REQUESTS} requests in a row: the reference tokens, every honest tab joins in time, none is a no-show, replaced or evicted`, async () => {
    const ids = new Map(before.map((t) => [t.index, t.volunteerId as string]));
    const honestIds = HONEST.map((i) => ids.get(i) as string);
    const answers: { status: number; tokens: number[] | string }[] = [];
    for (let k = 0; k < REQUESTS; k++) {
      const t0 = performance.now();
      const { status, json } = await rig.e.complete({ prompt: PROMPT, max_tokens: TOKENS, temperature: 0 });
      const ms = performance.now() - t0;
      process.stderr.write(`hostile-silent request ${k}: ${status} in ${ms.toFixed(0)} ms ${JSON.stringify(json.error ?? '')}\n`);
      answers.push({ status, tokens: json.webswarm?.tokens ?? json.error?.code ?? '' });
    }
    const msgs = messages();
    process.stderr.write(`${msgs.filter((m) => /session \d+:|no-show|evict|did not join|not reached by|unreach/.test(m)).join('\n')}\n`);
    // No honest tab was counted a no-show, taken out of a route or evicted.
    for (const id of honestIds) {
      expect(
        msgs.filter((m) => m.includes(`volunteer ${id} did not join`) || m.includes(`volunteer ${id} was not reached`)),
        id,
      ).toEqual([]);
      expect(
        msgs.filter((m) => m.includes(`${id} of stage`) && m.includes('takes its place')),
        id,
      ).toEqual([]);
    }
    expect(answers).toEqual(Array.from({ length: REQUESTS }, () => ({ status: 200, tokens: expected })));
    const after = await tabs();
    for (const i of HONEST) {
      const t = after.find((x) => x.index === i);
      expect(t?.volunteerId, `tab ${i} kept its socket`).toBe(ids.get(i));
      expect(t?.state, `tab ${i}`).toBe('ready');
    }
    // Every session had all its replicas joined, within the bound.
    const joins = msgs.map((m) => /^session \d+: (\d+) of (\d+) replicas joined in (\d+) ms/.exec(m)).filter((m) => m !== null);
    expect(joins.length).toBe(REQUESTS);
    for (const j of joins) {
      expect(j[1]).toBe(j[2]);
      expect(Number(j[3])).toBeLessThan(JOIN_BOUND_MS);
    }
    // The hostile tab was routed, tried to reach stage 1 and said it joined (the attack ran).
    const silent = await rig
      .page(HOSTILE)
      .evaluate(() => ({ peers: [...(window.__silent?.peers ?? [])], counts: window.__silent?.counts }));
    expect(silent.counts?.joinsSent).toBe(REQUESTS);
    expect(silent.peers.sort()).toEqual(NEIGHBOURS.map((i) => ids.get(i)).sort());
    // Its own record took the fault: a majority of stage 1 named it each session, a no-show each time, evicted at the third.
    const hostileId = ids.get(HOSTILE) as string;
    expect(msgs.filter((m) => m.includes(`${hostileId} of stage 0 was unreachable for 2 replicas of stage 1`))).toHaveLength(REQUESTS);
    expect(msgs.filter((m) => m.includes(`volunteer ${hostileId} was not reached by a majority of a neighbouring stage`))).toHaveLength(
      REQUESTS,
    );
    expect(after.find((t) => t.index === HOSTILE)?.state).toBe('evicted');
  });
});
