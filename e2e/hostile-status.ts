// The hostile-bytes specs' rig and what they read of the honest tabs: each
// page's status (its stage, data path and refusals by code) and the votes of
// a generation.
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, expect } from 'vitest';
import { type CompletionJson, type E2eSwarm, startE2eSwarm } from './harness.js';
import { HOSTILE_HOOKS } from './hostile-frames-page.js';

/**
 * 3 stages × r = 2 for the spec (started before its tests, closed after), the
 * tab `hostile` carrying HOSTILE_HOOKS before any session makes a connection.
 * 25 ms a hop (the bench's delay line, on the honest sends only) makes a
 * generation last long enough to be attacked mid-way.
 */
export function hostileSwarm(hostile: number, pathOf: (i: number) => 'main' | 'worker'): { readonly e: E2eSwarm; readonly hostile: Page } {
  let e: E2eSwarm | null = null;
  beforeAll(async () => {
    e = await startE2eSwarm({ volunteers: 6, stages: 3, redundancy: 2, dataPathOf: pathOf, quiet: true, netDelayMs: 25 });
    await e.swarm.pages[hostile]?.evaluate(HOSTILE_HOOKS);
  });
  afterAll(() => e?.close());
  const started = (): E2eSwarm => {
    if (e === null) throw new Error('the swarm has not started');
    return e;
  };
  return {
    get e() {
      return started();
    },
    get hostile() {
      const page = started().swarm.pages[hostile];
      if (page === undefined) throw new Error(`no tab ${hostile}`);
      return page;
    },
  };
}

export interface Seen {
  readonly index: number;
  readonly stage: number | null;
  readonly state: string;
  readonly dataPath: string;
  readonly volunteerId: string | null;
  readonly rejected: number;
  readonly by: Readonly<Record<string, number>>;
}

export function seen(pages: readonly Page[]): Promise<Seen[]> {
  return Promise.all(
    pages.map(async (p, index) => {
      const s = await p.evaluate(() => window.webswarmVolunteer);
      return {
        index,
        stage: s?.stage ?? null,
        state: s?.state ?? 'none',
        dataPath: s?.dataPath ?? 'none',
        volunteerId: s?.volunteerId ?? null,
        rejected: s?.framesRejected ?? 0,
        by: s?.framesRejectedBy ?? {},
      };
    }),
  );
}

/** How many more refusals of `code` a tab counts now than in `before` (the same tab's earlier status). */
export function more(now: Seen, before: readonly Seen[], code: string): number {
  return (now.by[code] ?? 0) - (before.find((x) => x.index === now.index)?.by[code] ?? 0);
}

/** Every vote of the generation: the stage's replicas all agreed (the hostile tab computes honestly; its junk must change nothing). */
export function expectUnanimous(json: CompletionJson): void {
  expect(json.webswarm.votes.length).toBeGreaterThan(0);
  for (const t of json.webswarm.votes) for (const v of t.votes) expect(v.agreed, `stage ${v.stage}`).toBe(v.replicas);
}
