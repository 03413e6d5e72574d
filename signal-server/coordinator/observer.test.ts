import { describe, expect, it } from 'vitest';
import type { StageVote } from '../../shared/protocol/messages.js';
import { voteCounts } from './observer.js';

const vote = (over: Partial<StageVote>): StageVote => ({
  stage: 0,
  agreed: 2,
  disagreed: 0,
  missing: 1,
  replicas: 3,
  server: false,
  ...over,
});

describe('voteCounts (the metrics’ and the dashboard’s votes)', () => {
  it('counts a volunteer stage’s outputs: agreed, disagreed, and the seats of r not answered yet', () => {
    expect(voteCounts([vote({}), vote({ stage: 1, agreed: 2, disagreed: 1, missing: 0 })])).toEqual({
      agreed: 4,
      disagreed: 1,
      missing: 1,
    });
    // A route left short of r (a replica gone, no spare): the empty seat is missing.
    expect(voteCounts([vote({ agreed: 2, missing: 0 })])).toEqual({ agreed: 2, disagreed: 0, missing: 1 });
  });

  it('counts no missing votes for a stage the server computed: no volunteer was asked', () => {
    const server = (stage: number) => vote({ stage, agreed: 1, missing: 0, server: true });
    // Before: 2 missing a stage, 6 a token the server computed alone at r = 3.
    expect(voteCounts([server(0), server(1), server(2)])).toEqual({ agreed: 3, disagreed: 0, missing: 0 });
    expect(voteCounts([server(0), vote({ stage: 1 })])).toEqual({ agreed: 3, disagreed: 0, missing: 1 });
  });
});
