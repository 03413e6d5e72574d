import { describe, expect, it } from 'vitest';
import { serverPeerId } from '../../shared/protocol/messages.js';
import { linkNeighbours } from './neighbour-links.js';

/** Grace in these tests: short, but far above the microtasks a settled connection takes. */
const GRACE_MS = 200;
/** The previous stage's replicas and the next's, r = 3. */
const BOTH_SIDES: readonly string[][] = [
  ['a', 'b', 'c'],
  ['x', 'y', 'z'],
];

/**
 * linkNeighbours over `stages` with connections that open (`open`), fail
 * (`failing`) or never answer (any other peer): what it did within `waitMs`
 * (its value, "rejected: " and its error's message, or 'pending'), and the peers it asked for.
 */
async function link(stages: readonly (readonly string[])[], open: readonly string[], failing: readonly string[], waitMs: number) {
  const asked: string[] = [];
  const connect = (id: string) => {
    asked.push(id);
    if (open.includes(id)) return Promise.resolve();
    if (failing.includes(id)) return Promise.reject(new Error(`no data channel to ${id}`));
    return new Promise<void>(() => {});
  };
  const p = linkNeighbours(stages, connect, GRACE_MS).catch((e: Error) => `rejected: ${e.message}`);
  const got = await Promise.race([p, new Promise<string>((r) => setTimeout(() => r('pending'), waitMs))]);
  return { got, asked: asked.sort() };
}

describe('linkNeighbours: a majority of each neighbouring stage before joining', () => {
  it('all connected: at once, nothing unreached', async () => {
    const r = await link(BOTH_SIDES, BOTH_SIDES.flat(), [], GRACE_MS / 2);
    expect(r.got).toEqual({ unreached: [] });
    expect(r.asked).toEqual(['a', 'b', 'c', 'x', 'y', 'z']);
  });

  it('r = 3, one neighbour that never answers: joins after the grace without it, naming it', async () => {
    const t0 = performance.now();
    expect((await link(BOTH_SIDES, ['a', 'b', 'x', 'y', 'z'], [], 20 * GRACE_MS)).got).toEqual({ unreached: ['c'] });
    expect(performance.now() - t0).toBeGreaterThanOrEqual(GRACE_MS - 5);
  });

  it('r = 3, one neighbour that fails: at once, naming it', async () => {
    expect((await link([['a', 'b', 'c']], ['a', 'b'], ['c'], GRACE_MS / 2)).got).toEqual({ unreached: ['c'] });
  });

  it('a majority of one stage is not enough: each stage needs its own', async () => {
    expect((await link(BOTH_SIDES, ['a', 'b', 'c', 'x'], [], 3 * GRACE_MS)).got).toBe('pending');
  });

  it('r = 3, two neighbours of a stage failing: refused, naming them and why', async () => {
    expect((await link(BOTH_SIDES, ['a', 'x', 'y', 'z'], ['b', 'c'], GRACE_MS)).got).toBe(
      'rejected: only 1 of 3 neighbours of a stage reachable (b: no data channel to b; c: no data channel to c)',
    );
  });

  it('r = 1: the single neighbour must connect (never answering: it waits; failing: refused)', async () => {
    expect((await link([['a'], ['x']], ['x'], [], 3 * GRACE_MS)).got).toBe('pending');
    expect((await link([['a'], ['x']], ['x'], ['a'], GRACE_MS)).got).toBe(
      'rejected: only 0 of 1 neighbours of a stage reachable (a: no data channel to a)',
    );
  });

  it("the server's replica needs no channel and counts toward the majority; the first and last stages have one neighbouring stage", async () => {
    const r = await link([[serverPeerId(1), 'a', 'b'], []], ['a'], [], 20 * GRACE_MS);
    expect(r.got).toEqual({ unreached: ['b'] });
    expect(r.asked).toEqual(['a', 'b']);
  });
});
