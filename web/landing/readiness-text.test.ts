// The landing page's readiness sentence, for each state a swarm goes through.
import { describe, expect, it } from 'vitest';
import type { SwarmReadiness } from '../../shared/swarm/readiness.js';
import { idleReasonText, idleShortText, idleTexts, readinessText, sharedClientShortText, sharedClientText } from './readiness-text.js';

const swarm = (
  ready: number[],
  loading: number[],
  redundancy = 3,
  fallback: SwarmReadiness['fallback'] = 'off',
  /** Ready of distinct clients per stage (absent: every ready one a client of its own). */
  routable: number[] = ready,
): SwarmReadiness => ({
  stages: ready.map((r, i) => ({ ready: r, loading: loading[i] ?? 0, routable: routable[i] ?? r })),
  volunteers: [...ready, ...loading].reduce((a, b) => a + b, 0),
  ready: ready.reduce((a, b) => a + b, 0),
  redundancy,
  canAnswer: ready.length > 0 && routable.every((r) => r >= redundancy),
  fallback,
});

describe('readinessText', () => {
  it('counts ready volunteers per stage and names the stages still short of the r a route needs', () => {
    expect(readinessText(swarm([0, 0, 0], [0, 0, 0]))).toBe(
      'No volunteers yet: the swarm answers once every stage has the 3 ready volunteers a route needs.',
    );
    expect(readinessText(swarm([3, 1, 0], [0, 2, 3]))).toBe(
      '4 of 9 volunteers ready (per stage: 3 / 1 / 0): the swarm answers once every stage has the 3 ready volunteers a route needs (waiting for stages 1, 2).',
    );
    // One ready volunteer in every stage is not a route at r = 3 (before, this said "the swarm answers now").
    expect(readinessText(swarm([1, 1, 1], [2, 2, 2]))).toBe(
      '3 of 9 volunteers ready (per stage: 1 / 1 / 1): the swarm answers once every stage has the 3 ready volunteers a route needs (waiting for stages 0, 1, 2).',
    );
    expect(readinessText(swarm([3, 3, 3], [0, 0, 0]))).toBe(
      '9 of 9 volunteers ready (per stage: 3 / 3 / 3): every stage has the 3 ready volunteers a route needs, the swarm answers now.',
    );
    expect(readinessText(swarm([1], [0], 1))).toBe(
      '1 of 1 volunteer ready (per stage: 1): every stage has the 1 ready volunteer a route needs, the swarm answers now.',
    );
    expect(readinessText(swarm([], []))).toBe('No model is served here, so the swarm cannot answer.');
  });

  it('says that the server answers meanwhile where the fallback is on (before, it said the swarm could not answer)', () => {
    expect(readinessText(swarm([1, 1, 0], [0, 0, 0], 3, 'stage'))).toBe(
      '2 of 2 volunteers ready (per stage: 1 / 1 / 0): the swarm answers once every stage has the 3 ready volunteers a route needs (waiting for stages 0, 1, 2); meanwhile the server computes the stages short of them itself (answers labelled, not verified by volunteers).',
    );
    expect(readinessText(swarm([0, 0], [0, 0], 3, 'whole'))).toBe(
      'No volunteers yet: the swarm answers once every stage has the 3 ready volunteers a route needs; meanwhile the server computes whole requests itself (answers labelled, not verified by volunteers).',
    );
    expect(readinessText(swarm([3, 3], [0, 0], 3, 'stage'))).toBe(
      '6 of 6 volunteers ready (per stage: 3 / 3): every stage has the 3 ready volunteers a route needs, the swarm answers now.',
    );
  });
});

describe('ready volunteers of one client', () => {
  it('are not a route: the page waits, and says why (a stranger’s pass: two tabs of one address, "answers now", then 503s)', () => {
    expect(readinessText(swarm([2], [0], 2, 'off', [1]))).toBe(
      '2 of 2 volunteers ready (per stage: 2): the swarm answers once every stage has the 2 ready volunteers a route needs (waiting for stage 0; a route takes one volunteer a client, and some of those ready are one client’s).',
    );
    expect(idleReasonText(swarm([2], [0], 2, 'off', [1]), 0)).toBe(
      "This tab's stage 0 has 1 of the 2 ready volunteers a route needs (of different clients: 2 ready): until more volunteers join, requests wait for them, and this tab gets no work.",
    );
  });
});

describe('idleReasonText: why a ready volunteer gets no work (before, it only said "Ready, waiting for work")', () => {
  it('names its own stage short of r, and who computes it meanwhile', () => {
    expect(idleReasonText(swarm([3, 1, 3], []), 1)).toBe(
      "This tab's stage 1 has 1 of the 3 ready volunteers a route needs: until more volunteers join, requests wait for them, and this tab gets no work.",
    );
    expect(idleReasonText(swarm([3, 2, 3], [], 3, 'stage'), 1)).toBe(
      "This tab's stage 1 has 2 of the 3 ready volunteers a route needs: until more volunteers join, the server computes this stage itself (answers labelled, not verified by volunteers), and this tab gets no work.",
    );
    expect(idleReasonText(swarm([1, 3], [], 3, 'whole'), 0)).toContain('the server computes whole requests itself');
  });

  it('names other stages short where they stop every route of volunteers; none where the fallback stands in beside it', () => {
    expect(idleReasonText(swarm([3, 1, 0], []), 0)).toBe(
      'Stages 1, 2 have fewer than the 3 ready volunteers a route needs: until more volunteers join, requests wait for them, and this tab gets no work.',
    );
    expect(idleReasonText(swarm([3, 1], [], 3, 'whole'), 0)).toBe(
      'Stage 1 has fewer than the 3 ready volunteers a route needs: until more volunteers join, the server computes whole requests itself, and this tab gets no work.',
    );
    expect(idleReasonText(swarm([3, 1], [], 3, 'stage'), 0)).toBeNull();
    expect(idleReasonText(swarm([3, 3, 3], []), 2)).toBeNull();
    // A stage the listing does not have (a re-cut model the page has not read yet): nothing said.
    expect(idleReasonText(swarm([1, 1], []), 5)).toBeNull();
  });
});

describe('idleShortText: the widget line of idleReasonText', () => {
  it('names the stage short and its count, or the other stages short; nothing where the long text says nothing', () => {
    expect(idleShortText(swarm([3, 1, 3], []), 1)).toBe('No work yet: stage 1 has 1 of 3 volunteers');
    expect(idleShortText(swarm([3, 1, 0], []), 0)).toBe('No work yet: stages 1, 2 short of volunteers');
    expect(idleShortText(swarm([3, 1], [], 3, 'whole'), 0)).toBe('No work yet: stage 1 short of volunteers');
    expect(idleShortText(swarm([3, 1], [], 3, 'stage'), 0)).toBeNull();
    expect(idleShortText(swarm([3, 3, 3], []), 2)).toBeNull();
    expect(idleShortText(swarm([1, 1], []), 5)).toBeNull();
  });
});

describe('sharedClientText: a ready volunteer that may wait for another of its client (before, unexplained)', () => {
  it('says so where the stage holds more ready volunteers than clients, and nothing where a stage is short', () => {
    expect(sharedClientText(swarm([3], [], 1, 'off', [2]), 0)).toBe(
      'Stage 0 has 3 ready volunteers of 2 clients: a route takes one volunteer of each client (tabs of one browser, or of one network address, count as one), so this tab may wait while another of its client computes.',
    );
    expect(sharedClientShortText(swarm([2], [], 1, 'off', [1]), 0)).toBe('Waiting: 2 tabs of 1 client here');
    // Every ready volunteer a client of its own: nothing to say.
    expect(sharedClientText(swarm([3], [], 1), 0)).toBeNull();
    expect(sharedClientShortText(swarm([3], [], 1), 0)).toBeNull();
    // Its stage short: idleReasonText says why, this says nothing.
    expect(sharedClientText(swarm([2], [], 2, 'off', [1]), 0)).toBeNull();
    expect(sharedClientText(swarm([2], [], 1, 'off', [1]), 4)).toBeNull();
  });
});

describe('idleTexts: the page’s sentence and the widget’s line together', () => {
  it('gives a short stage’s reason first, else the shared clients’, else nothing', () => {
    expect(idleTexts(swarm([2], [], 2, 'off', [1]), 0)).toEqual({
      long: idleReasonText(swarm([2], [], 2, 'off', [1]), 0),
      short: 'No work yet: stage 0 has 1 of 2 volunteers',
    });
    expect(idleTexts(swarm([2], [], 1, 'off', [1]), 0)?.short).toBe('Waiting: 2 tabs of 1 client here');
    expect(idleTexts(swarm([3], [], 1), 0)).toBeNull();
  });
});
