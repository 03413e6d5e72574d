// A re-partition replaces the fallback's server replicas: the old ones admit
// no more sessions, the sessions they admitted run on to their end (the
// coordinator replays them), and then their runner (real onnxruntime sessions
// on real stage files) is released. Sessions are released through the new
// replicas, as the coordinator does (it holds only the new ones).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StageManifest } from '../../shared/model/manifest.js';
import { type Feeds, freshFeeds } from '../../shared/model/pipeline.js';
import { encodeFrame } from '../../shared/protocol/frames.js';
import { ensureStages } from '../models/model-folder.js';
import { type ServerRunner, stageRunner } from '../stage-runners.js';
import { MODEL } from '../testing/http-swarm.js';
import { type ServerReplicaOutputs, ServerReplicas } from './fallback.js';

let cache: string;
let dir: string;
let manifest: StageManifest;

beforeAll(async () => {
  cache = mkdtempSync(join(tmpdir(), 'webswarm-fallback-handover-'));
  ({ dir, manifest } = await ensureStages(MODEL, { stages: 3 }, cache));
});
afterAll(() => rmSync(cache, { recursive: true, force: true }));

const quiet: ServerReplicaOutputs = { frame() {}, joined() {}, digest() {}, logits() {}, failed() {}, rejected() {} };

/** Server replicas whose runners (real runner-thread sessions of the stage files) are kept in `made`. */
function replicas(made: ServerRunner[], outputs: ServerReplicaOutputs = quiet): ServerReplicas {
  const make = stageRunner(dir);
  return new ServerReplicas(
    manifest,
    {
      mode: 'stage',
      maxSessions: 4,
      executor: async () => {
        const e = await make();
        made.push(e);
        return e;
      },
    },
    outputs,
  );
}

/** Stage 0's prefill of three tokens, from an empty cache. */
function prefill(): Feeds {
  return freshFeeds(manifest, 0, { dtype: 'int64', dims: [1, 3], data: BigInt64Array.from([1n, 2n, 3n]) });
}

describe('the fallback across a partition switch', () => {
  it('the old runner serves the sessions it admitted to their end, then is released; the new one lives on', async () => {
    const made: ServerRunner[] = [];
    const old = replicas(made);
    expect(old.admit(7)).toBe(true);
    const running = old.runner.run(0, prefill());
    const next = replicas(made).succeeding(old);
    expect(old.runnerReleased).toBeNull();
    // Retired: no new session there; the one it admitted still computes, during and after the switch.
    expect(old.admit(8)).toBe(false);
    const before = await running;
    const after = await old.runner.run(0, prefill());
    expect(after[Object.keys(after)[0] as string]?.data).toEqual(before[Object.keys(before)[0] as string]?.data);
    expect(made.length).toBe(1);
    // The coordinator releases the session through the replicas it holds now: the old runner goes.
    next.release(7);
    expect(await old.runnerReleased).toBe(true);
    // Really released: its onnxruntime sessions run nothing more, and the old replicas refuse to.
    await expect((made[0] as ServerRunner).run(0, prefill())).rejects.toThrow();
    await expect(old.runner.run(0, prefill())).rejects.toThrow('released');
    // The new replicas are untouched and compute on a runner of their own.
    expect(next.runnerReleased).toBeNull();
    expect(next.admit(9)).toBe(true);
    await next.runner.run(0, prefill());
    expect(made.length).toBe(2);
    await made[1]?.release();
  });

  it('idle old replicas are released at the switch, and one that never made a runner makes none', async () => {
    const made: ServerRunner[] = [];
    const used = replicas(made);
    used.admit(1);
    await used.runner.run(0, prefill());
    used.release(1);
    const unused = replicas(made).succeeding(used);
    expect(await used.runnerReleased).toBe(true);
    // Two switches in a row: the second replicas never ran a step, so there was nothing to release.
    const third = replicas(made).succeeding(unused);
    expect(await unused.runnerReleased).toBe(false);
    expect(made.length).toBe(1);
    expect(third.busy).toBe(0);
  });

  it('a chain of switches while one session runs: released through the newest replicas, every old runner goes', async () => {
    const made: ServerRunner[] = [];
    const a = replicas(made);
    a.admit(3);
    await a.runner.run(0, prefill());
    const b = replicas(made).succeeding(a);
    expect(b.admit(3)).toBe(true);
    await b.runner.run(0, prefill());
    const c = replicas(made).succeeding(b);
    expect(a.runnerReleased).toBeNull();
    expect(b.runnerReleased).toBeNull();
    c.release(3);
    expect(await a.runnerReleased).toBe(true);
    expect(await b.runnerReleased).toBe(true);
    expect(made.length).toBe(2);
  });

  it('a chain of switches where the middle replicas admitted nothing: the first one, still holding a session, is not lost', async () => {
    const made: ServerRunner[] = [];
    const a = replicas(made);
    a.admit(5);
    await a.runner.run(0, prefill());
    // Idle at the next switch: released then; the session of `a` still runs (on volunteers, or not yet ended).
    const b = replicas(made).succeeding(a);
    const c = replicas(made).succeeding(b);
    expect(await b.runnerReleased).toBe(false);
    expect(a.runnerReleased).toBeNull();
    // Released through the newest replicas, as the coordinator does: the first runner goes too.
    c.release(5);
    expect(await a.runnerReleased).toBe(true);
    expect(made.length).toBe(1);
  });
});

describe("the fallback's seats go in turn", () => {
  it('a freed seat is the waiting session’s whose client holds the fewest, the first of those to wait; a running session’s lost stage goes first; turns survive a switch', () => {
    // maxSessions 4: one client holds at most 2.
    const f = replicas([]);
    expect([f.admit(1, 'a'), f.admit(2, 'a'), f.admit(3, 'b'), f.admit(4, 'c')]).toEqual([true, true, true, true]);
    // Full: b's second session waits, then c's second, then d's first.
    f.wait(5, 'b');
    f.wait(6, 'c');
    f.wait(7, 'd');
    f.wait(5, 'b'); // a second call keeps its place
    expect(f.waiting).toBe(3);
    f.release(1);
    // The seat a's session gave back is d's, which holds none (b and c hold one each): not b's, the first to wait,
    // and not a newcomer's of a client that holds one (a).
    expect(f.admit(8, 'a')).toBe(false);
    expect(f.admit(5, 'b')).toBe(false);
    expect(f.admit(7, 'd')).toBe(true);
    f.release(2);
    // Then b's, the first of those holding one to wait; c's behind it; a newcomer holding none (e) goes before both.
    expect(f.freeSeats(6, 'c')).toBe(0);
    expect(f.freeSeats(9, 'e')).toBe(1);
    expect(f.admit(5, 'b')).toBe(true);
    expect(f.waiting).toBe(1);
    // A session waiting whose client holds its share keeps no seat from the others; c's waiting one (c holds none
    // now) keeps the seat c's first gave back from a newcomer of a client that holds none too.
    f.release(4);
    f.wait(10, 'b');
    expect(f.heldBy('b')).toBe(2);
    expect(f.freeSeats(6, 'c')).toBe(1);
    expect(f.freeSeats(11, 'f')).toBe(0);
    expect(f.admit(12, 'g')).toBe(false);
    expect(f.admit(6, 'c')).toBe(true);
    // A running session whose stage the fallback must take goes first (its work so far at stake), where a seat is free.
    f.release(7);
    f.wait(13, 'h');
    expect(f.admit(14, 'i')).toBe(false);
    expect(f.admit(14, 'i', true)).toBe(true);
    expect(f.admit(15, 'j', true)).toBe(false);
    // A waiter that leaves (answered by volunteers, cancelled, timed out) gives its turn up.
    f.unwait(13);
    f.release(14);
    expect(f.admit(16, 'k')).toBe(true);
    // Turns carry over to the replicas of a new partition.
    f.release(16);
    f.wait(17, 'l');
    const next = replicas([]).succeeding(f);
    expect(next.waiting).toBe(2);
    expect(next.freeSeats(18, 'm')).toBe(2);
  });
});

describe("the fallback's refusals", () => {
  it('name the peer whose frame was refused, not the server replica alone (the log is keyed by its first word)', () => {
    const refused: [string, string, string | null][] = [];
    const r = replicas([], { ...quiet, rejected: (from, reason, sender) => refused.push([from, reason, sender]) });
    r.link('server:1')?.send('session:open', { sessionId: 4, stage: 1, replica: 0, prev: ['vH'], next: [], replayTo: 0 });
    // One value short of a position: no hidden state of this model.
    const hidden = manifest.model.hiddenSize;
    for (const m of encodeFrame({
      sessionId: 4,
      step: 0,
      stage: 0,
      replica: 0,
      dims: [1, 1, hidden - 1],
      data: new Float32Array(hidden - 1),
    }))
      r.frame('vH', 'server:1', m);
    expect(refused).toHaveLength(1);
    expect(refused[0]?.[0]).toBe('server:1');
    expect(refused[0]?.[1]).toMatch(/^ERR_FRAME_SHAPE/);
    expect(refused[0]?.[2]).toBe('vH');
    r.release(4);
  });
});
