import { describe, expect, it } from 'vitest';
import { serverPeerId } from '../../shared/protocol/messages.js';
import { linkNeighbours } from './neighbour-links.js';

/** Grace in these tests: short, but far above the microtasks a settled connection takes. */
const GRACE_MS = 200;

/** Connections that open, fail or never answer, by peer id (a peer not named never answers). */
function peers(open: readonly string[], failing: readonly string[] = []) {
  const asked: string[] = [];
  const connect = (id: string) => {
    asked.push(id);
    if (open.includes(id)) return Promise.resolve();
    if (failing.includes(id)) return Promise.reject(new Error(`no data channel to ${id}`));
    return new Promise<void>(() => {});
  };
  return { asked, connect };
}

/** What the promise did within `ms`: its value, its error's message, or 'pending'. */
async function within<T>(p: Promise<T>, ms: number): Promise<T | string> {
  return Promise.race([p.catch((e: Error) => `rejected: ${e.message}`), new Promise<string>((r) => setTimeout(() => r('pending'), ms))]);
}

describe('linkNeighbours: a majority of each neighbouring stage before joining', () => {
  it('all connected: at once, nothing unreached', async () => {
    const p = peers(['a', 'b', 'c', 'x', 'y', 'z']);
    expect(
      await within(
        linkNeighbours(
          [
            ['a', 'b', 'c'],
            ['x', 'y', 'z'],
          ],
          p.connect,
          GRACE_MS,
        ),
        GRACE_MS / 2,
      ),
    ).toEqual({
      unreached: [],
    });
    expect(p.asked.sort()).toEqual(['a', 'b', 'c', 'x', 'y', 'z']);
  });

  it('r = 3, one neighbour that never answers: joins after the grace without it, naming it', async () => {
    const p = peers(['a', 'b', 'x', 'y', 'z']);
    const t0 = performance.now();
    const got = await within(
      linkNeighbours(
        [
          ['a', 'b', 'c'],
          ['x', 'y', 'z'],
        ],
        p.connect,
        GRACE_MS,
      ),
      20 * GRACE_MS,
    );
    expect(got).toEqual({ unreached: ['c'] });
    expect(performance.now() - t0).toBeGreaterThanOrEqual(GRACE_MS - 5);
  });

  it('r = 3, one neighbour that fails: at once, naming it', async () => {
    const p = peers(['a', 'b'], ['c']);
    expect(await within(linkNeighbours([['a', 'b', 'c']], p.connect, GRACE_MS), GRACE_MS / 2)).toEqual({ unreached: ['c'] });
  });

  it('a majority of one stage is not enough: each stage needs its own', async () => {
    const p = peers(['a', 'b', 'c', 'x']);
    expect(
      await within(
        linkNeighbours(
          [
            ['a', 'b', 'c'],
            ['x', 'y', 'z'],
          ],
          p.connect,
          GRACE_MS,
        ),
        3 * GRACE_MS,
      ),
    ).toBe('pending');
  });

  it('r = 3, two neighbours of a stage failing: refused, naming them and why', async () => {
    const p = peers(['a', 'x', 'y', 'z'], ['b', 'c']);
    const got = await within(
      linkNeighbours(
        [
          ['x', 'y', 'z'],
          ['a', 'b', 'c'],
        ],
        p.connect,
        GRACE_MS,
      ),
      GRACE_MS,
    );
    expect(got).toBe('rejected: only 1 of 3 neighbours of a stage reachable (b: no data channel to b; c: no data channel to c)');
  });

  it('r = 1: the single neighbour must connect (never answering: it waits; failing: refused)', async () => {
    expect(await within(linkNeighbours([['a'], ['x']], peers(['x']).connect, GRACE_MS), 3 * GRACE_MS)).toBe('pending');
    expect(await within(linkNeighbours([['a'], ['x']], peers(['x'], ['a']).connect, GRACE_MS), GRACE_MS)).toBe(
      'rejected: only 0 of 1 neighbours of a stage reachable (a: no data channel to a)',
    );
  });

  it("the server's replica needs no channel and counts toward the majority; the first and last stages have one neighbouring stage", async () => {
    const p = peers(['a']);
    const got = await within(linkNeighbours([[serverPeerId(1), 'a', 'b'], []], p.connect, GRACE_MS), 20 * GRACE_MS);
    expect(got).toEqual({ unreached: ['b'] });
    expect(p.asked.sort()).toEqual(['a', 'b']);
  });
});
