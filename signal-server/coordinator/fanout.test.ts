// Optimistic quorum fan-out (FANOUT=majority, shared/swarm/fanout.ts) with real
// stages, real onnxruntime sessions, real replicas (ReplicaCore) and the real
// coordinator, in one process: every data-channel message goes through a
// counting wire. Each receiver gets copies from a majority of its senders by the
// rotation and asks the others (a want) only when those give no majority at
// once; the tokens are the reference runner's whatever one replica does, and
// liars and equivocators are caught as with all-to-all.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GREEDY } from '../../shared/model/sampling.js';
import { decodeWant, isWant } from '../../shared/swarm/fanout.js';
import { type FaultBehaviour, faultBehaviour } from '../../shared/swarm/faults.js';
import { closeGoldenSwarm, type GoldenSwarm, startGoldenSwarm } from '../testing/golden-swarm.js';
import { createInProcessSwarm, type InProcessSwarm, releaseInProcessSwarm, runInProcess, type Wire } from '../testing/in-process-swarm.js';

const STAGES = 3;
const R = 3;
const TOKENS = 10;
const TIMEOUTS = { joinMs: 5_000, stepMs: 10_000 };

let golden: GoldenSwarm | undefined;
let swarm: InProcessSwarm;
let stageBytes: readonly Uint8Array[];
let promptIds: number[];
let expected: number[];

beforeAll(async () => {
  golden = await startGoldenSwarm('webswarm-fanout-', { stages: STAGES, r: R, tokens: TOKENS, timeouts: TIMEOUTS });
  ({ swarm, stageBytes, promptIds, expected } = golden);
});

afterAll(() => closeGoldenSwarm(golden));

/** Counts what goes over the data channels: frame messages, and wants by (asker → sender). */
function countingWire() {
  const wants: string[] = [];
  let frames = 0;
  const wire: Wire = (from, to, bytes) => {
    if (isWant(bytes)) {
      const w = decodeWant(bytes);
      wants.push(typeof w === 'string' ? `bad ${w}` : `${from}>${to} ${w.kind}`);
    } else frames += 1;
    return [{ from, bytes }];
  };
  return { wire, wants, frames: () => frames };
}

async function run(fanout: 'all' | 'majority', faults: Record<string, FaultBehaviour> = {}, silent: string[] = [], meshLoop = true) {
  const c = countingWire();
  const r = await runInProcess({ ...swarm, fanout, meshLoop }, promptIds, TOKENS, faults, silent, null, GREEDY, c.wire);
  return { r, wants: c.wants, frames: c.frames() };
}

describe('optimistic quorum fan-out (FANOUT=majority), in process', () => {
  it('honest replicas: the reference tokens, no want, and two thirds of the all-to-all messages (mesh loop on and off)', async () => {
    for (const meshLoop of [true, false]) {
      const all = await run('all', {}, [], meshLoop);
      const maj = await run('majority', {}, [], meshLoop);
      expect(all.r.error).toBeNull();
      expect(maj.r.error).toBeNull();
      expect(all.r.tokens).toEqual(expected);
      expect(maj.r.tokens).toEqual(expected);
      expect(maj.wants).toEqual([]);
      // At r = 3 each sender sends 2 receivers, not 3: a hop costs 6 messages, not 9 (the tiny model's frames are one chunk).
      // Roll-backs of the mesh loop's speculative steps add a few in either run.
      expect(maj.frames / all.frames).toBeGreaterThan(0.5);
      expect(maj.frames / all.frames).toBeLessThan(0.75);
      // Every replica still reported the copies it counted: a majority of its senders at each step.
      expect(maj.r.equivocators).toEqual([]);
      expect(maj.r.suspects).toEqual([]);
    }
  });

  it('a lying sender: its two receivers see no majority, ask the third sender (once each), the liar is outvoted', async () => {
    const { r, wants } = await run('majority', { s1r1: faultBehaviour('noise', 3) });
    expect(r.error).toBeNull();
    expect(r.tokens).toEqual(expected);
    // Receiver j counts on senders j and j+1: s1r1 is counted on by s2r0 and s2r1, which ask s1r2 and s1r0.
    expect([...new Set(wants)].sort()).toEqual(['s2r0>s1r2 frames', 's2r1>s1r0 frames']);
    expect(wants.length).toBe(2);
    // Outvoted at the stage's digest vote, as with all-to-all: disagreements only, then evicted (a spare took its place).
    expect(r.scores.get('s1r1')?.disagreed).toBeGreaterThan(0);
    expect(r.scores.get('s1r1')?.agreed).toBe(0);
    expect(r.evicted.get('s1r1')).toBe('ERR_EVICTED');
  });

  it('a silent sender: tokens still come, each of its receivers asks once, and the delay is paid once', async () => {
    const { r, wants } = await run('majority', {}, ['s0r1']);
    expect(r.error).toBeNull();
    expect(r.tokens).toEqual(expected);
    // Its receivers ask the sender they were not assigned; their own copies come late at the first step (they
    // waited the deadline), so a receiver of theirs that got one copy early may ask too: once per pair, never again.
    expect(wants).toContain('s1r0>s0r2 frames');
    expect(wants).toContain('s1r1>s0r0 frames');
    expect(new Set(wants).size).toBe(wants.length);
    expect(wants.every((w) => /^s[12]r\d>s[01]r\d frames$/.test(w))).toBe(true);
    // Only the first step waits for the deadline (at most WANT_CAP_MS); later ones get the asked copies at once.
    const later = r.stepMs.slice(2);
    expect(Math.max(...later)).toBeLessThan(5_000);
  });

  it('an equivocating sender among honest ones: outvoted by its receivers (which ask), suspected as with all-to-all', async () => {
    const all = await run('all', { s1r1: faultBehaviour('equivocate', 1) });
    const maj = await run('majority', { s1r1: faultBehaviour('equivocate', 1) });
    for (const x of [all, maj]) {
      expect(x.r.error).toBeNull();
      expect(x.r.tokens).toEqual(expected);
      expect(x.r.equivocators).toEqual([]);
      expect(x.r.suspects.map((e) => e.volunteer)).toEqual(['s1r1']);
    }
    expect(maj.wants.length).toBe(2);
  });

  it('two colluding equivocators of stage 0, heard by two receivers each: caught at the first step, as with all-to-all', async () => {
    // Two spares for stage 0, so both can be put out of the route at once.
    const roomy = await createInProcessSwarm(swarm.manifest, stageBytes, R, TIMEOUTS, 2);
    const c = countingWire();
    let r: Awaited<ReturnType<typeof runInProcess>>;
    try {
      r = await runInProcess(
        { ...roomy, fanout: 'majority' },
        promptIds,
        TOKENS,
        { s0r0: faultBehaviour('equivocate', 1), s0r1: faultBehaviour('equivocate', 1) },
        [],
        null,
        GREEDY,
        c.wire,
      );
    } finally {
      await releaseInProcessSwarm(roomy);
    }
    expect(r.error).toBeNull();
    expect(r.tokens).toEqual(expected);
    expect(r.equivocators.map((e) => `${e.volunteer}@${e.step}`).sort()).toEqual(['s0r0@0', 's0r1@0']);
  });

  it('a last-stage replica sending stage 0 wrong tokens (mesh loop): stage 0 asks the others, the reference tokens', async () => {
    const liar: FaultBehaviour = { ...faultBehaviour('noise', 1), output: (_s, d) => d, token: (_s, t) => (t + 1) % 50 };
    const { r, wants } = await run('majority', { s2r2: liar });
    expect(r.error).toBeNull();
    expect(r.tokens).toEqual(expected);
    expect([...wants].sort()).toEqual(['s0r1>s2r0 tokens', 's0r2>s2r1 tokens']);
  });
});
