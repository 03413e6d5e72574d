// A volunteer pauses (its socket goes, as web/volunteer/replica.ts pause() does) mid-request on a swarm with
// the fallback on and re-partitioning on, over the real protocol: a real server on port 0, Node volunteers that
// compute with onnxruntime and speak Socket.IO, requests over the HTTP API. The departure leaves a stage short, the
// swarm is cut anew and the request is replayed on the cut, where every volunteer proves its new stage again. The
// replay waits for them (for a while) rather than leave the rest of the request to the server.
import { describe, expect, it } from 'vitest';
import type { FaultBehaviour } from '../shared/swarm/faults.js';
import { REPLAY_READYING_WAIT_MS } from './coordinator/session-runner.js';
import { createLogger } from './log.js';
import { httpSwarm } from './testing/http-swarm.js';
import type { NodeVolunteer } from './testing/node-volunteer.js';
import { serverStages } from './testing/short-stage-swarm.js';

const { start, volunteer, readyCount, complete, stageCache } = httpSwarm('pause-replay');

/** How long a test waits for volunteers to load and prove their stages: generous, for 2 busy cores. */
const READY_MS = 90_000;
/** Tokens of the request: enough that the cut is built and switched to while it runs. */
const TOKENS = 80;
/** Each step of a volunteer waits this long first (honest outputs): the request outlasts the build of the cut. */
const STEP_DELAY_MS = 15;
const SLOWED: FaultBehaviour = { output: (_step, d) => d, delayMs: STEP_DELAY_MS };

/**
 * A server of 2 stages × r = 2 with the fallback and re-partitioning on, and 4 ready volunteers of 4 clients;
 * `holdProof(i)`: how volunteer i holds its answers to challenges (NodeVolunteerOptions.holdProof).
 */
async function swarm(holdProof?: (i: number) => (stage: number) => Promise<void>) {
  const lines: string[] = [];
  const logger = createLogger('info', { write: (chunk: string) => lines.push(...chunk.split('\n').filter((l) => l.length > 0)) });
  const { server, url } = await start(2, 2, {
    stepTimeoutMs: 20_000,
    fallback: 'stage',
    repartition: { stageCache: stageCache() },
    logger,
  });
  const coordinator = server.coordinator;
  if (coordinator === null) throw new Error('no coordinator');
  const vs = Array.from({ length: 4 }, (_, i) =>
    volunteer(url, `127.0.0.${30 + i}`, { fault: SLOWED, ...(holdProof === undefined ? {} : { holdProof: holdProof(i) }) }),
  );
  await expect.poll(() => readyCount(url), { timeout: READY_MS }).toBe(4);
  const messages = () => lines.map((l) => (JSON.parse(l) as { msg?: string }).msg ?? '');
  return { url, coordinator, vs, messages };
}

/** The tokens the request had when it was replayed (the log's "replaying a request after N tokens"). */
function replayedAfter(messages: readonly string[]): number {
  const replays = messages.map((m) => /^replaying a request after (\d+) tokens/.exec(m)).filter((m) => m !== null);
  expect(replays).toHaveLength(1);
  return Number(replays[0]?.[1]);
}

describe('a volunteer pauses mid-request (FALLBACK=stage, REPARTITION=on)', () => {
  it('one of 4 volunteers on 2 stages × r = 2 pauses: the replay on the cut waits for the 3 left to prove it again, and every token after the replay is verified (before: the server computed all of them)', async () => {
    const { url, coordinator, vs, messages } = await swarm();
    // Without the pause: no token the server computed a stage of.
    const before = await complete(url, TOKENS);
    expect(before.status).toBe(200);
    expect(before.body.webswarm?.tokens).toHaveLength(TOKENS);
    expect(serverStages(before.body).flat()).toEqual([]);
    expect(before.body.webswarm?.verified).toBe(true);
    // A volunteer of stage 1 pauses after 4 steps: no spare, so the server takes stage 1 of the request, and 3
    // volunteers cannot hold 2 stages × r = 2: the swarm is cut to 1 stage, each of the 3 proving it again.
    const pausing = vs.find((v) => v.stage === 1) as NodeVolunteer;
    pausing.leaveAfter(4);
    const r = await complete(url, TOKENS);
    expect(r.body.error).toBeUndefined();
    expect(r.status).toBe(200);
    expect(r.body.webswarm?.tokens).toEqual(before.body.webswarm?.tokens);
    expect(coordinator.repartitions).toBe(1);
    expect(coordinator.replays).toBe(1);
    const replayed = replayedAfter(messages());
    expect(replayed).toBeLessThan(TOKENS);
    // Every token after the replay by a majority of r volunteers, none by the server (before: the server computed
    // every one of them, [0] each: 77 of the 80 tokens here, the replay coming after 3).
    const after = r.body.webswarm?.votes.slice(replayed) ?? [];
    expect(after).toHaveLength(TOKENS - replayed);
    expect(after.map((v) => v.server_stages)).toEqual(after.map(() => []));
    for (const v of after) expect(v.verified).toBe(true);
  }, 180_000);

  it('the wait is bounded: where the volunteers left do not prove the cut within REPLAY_READYING_WAIT_MS, the fallback computes it and the request answers', async () => {
    // Two of the volunteers hold their answers to the cut's challenges (not to their first ones) until the end.
    let holding = false;
    const held: (() => void)[] = [];
    const hold = () => (holding ? new Promise<void>((resolve) => held.push(resolve)) : Promise.resolve());
    const holders = new Set<number>();
    const { url, coordinator, vs, messages } = await swarm((i) => () => (holders.has(i) ? hold() : Promise.resolve()));
    try {
      const before = await complete(url, TOKENS);
      expect(before.status).toBe(200);
      const pausing = vs.find((v) => v.stage === 1) as NodeVolunteer;
      for (const [i, v] of vs.entries()) if (v !== pausing && holders.size < 2) holders.add(i);
      holding = true;
      pausing.leaveAfter(4);
      const r = await complete(url, TOKENS);
      expect(r.body.error).toBeUndefined();
      expect(r.status).toBe(200);
      expect(r.body.webswarm?.tokens).toEqual(before.body.webswarm?.tokens);
      expect(coordinator.replays).toBe(1);
      const replayed = replayedAfter(messages());
      // 1 of the 3 ready on the cut: after the wait, the server computes its one stage for the rest.
      expect(r.ms).toBeGreaterThanOrEqual(REPLAY_READYING_WAIT_MS);
      expect(r.ms).toBeLessThan(REPLAY_READYING_WAIT_MS + 20_000);
      const after = serverStages(r.body).slice(replayed);
      expect(after.length).toBeGreaterThan(0);
      expect(after).toEqual(after.map(() => [0]));
      expect(r.body.webswarm?.verified).toBe(false);
    } finally {
      for (const release of held) release();
    }
  }, 180_000);
});
