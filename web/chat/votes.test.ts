import { describe, expect, it } from 'vitest';
import type { StageVote } from '../../shared/protocol/messages.js';
import { isVerified, legendText, majorityOf, serverShareText, serverStages, stageVoteText, verdictText } from './votes.js';

const vote = (stage: number, agreed: number, disagreed: number, missing: number, replicas: number): StageVote => ({
  stage,
  agreed,
  disagreed,
  missing,
  replicas,
  server: false,
});

describe('tokens the server computed (the fallback)', () => {
  const served = (stage: number): StageVote => ({ stage, agreed: 1, disagreed: 0, missing: 0, replicas: 3, server: true });
  it('are summed up apart: computed by the server alone, or in part (before, all of them "in part")', () => {
    const alone = { votes: [served(0), served(1)] };
    const part = { votes: [vote(0, 3, 0, 0, 3), served(1)] };
    const none = { votes: [vote(0, 3, 0, 0, 3), vote(1, 3, 0, 0, 3)] };
    expect(serverShareText([alone, alone, none])).toBe(' (2 computed by the server alone: too few volunteers)');
    expect(serverShareText([alone, part, part])).toBe(
      ' (1 computed by the server alone, 2 computed in part by the server: too few volunteers)',
    );
    expect(serverShareText([part])).toBe(' (1 computed in part by the server: too few volunteers)');
    expect(serverShareText([none])).toBe('');
  });

  it('are never green, and say which stages the server computed', () => {
    const t = { verified: false, redundancy: 3, votes: [vote(0, 3, 0, 0, 3), served(1), served(2)] };
    expect(isVerified(t)).toBe(false);
    expect(serverStages(t)).toEqual([1, 2]);
    expect(verdictText(t)).toBe('not verified by volunteers: the server computed stages 1, 2 itself (fallback: too few volunteers)');
    expect(stageVoteText(served(1))).toBe('stage 1: computed by the server (fallback), not by volunteers');
  });
  it('are not green even when the server says verified and the counts would do with r = 1', () => {
    const t = { verified: true, redundancy: 1, votes: [{ ...served(0), replicas: 1 }] };
    expect(isVerified(t)).toBe(false);
    expect(verdictText(t)).toContain('the server computed stage 0');
  });
});

describe('majorityOf', () => {
  it('is ⌊r/2⌋+1', () => {
    expect([1, 2, 3, 4, 5].map(majorityOf)).toEqual([1, 2, 2, 3, 3]);
  });
});

describe('isVerified', () => {
  it('is true when the server says so and every stage has a majority of r', () => {
    expect(isVerified({ verified: true, redundancy: 3, votes: [vote(0, 3, 0, 0, 3), vote(1, 2, 0, 1, 3)] })).toBe(true);
  });

  it('is false with redundancy 1, even for a flag that says verified', () => {
    expect(isVerified({ verified: true, redundancy: 1, votes: [vote(0, 1, 0, 0, 1)] })).toBe(false);
  });

  it('is false when a stage agreed "1 of 1" on a route shorter than r (issue 9: the majority counted from the route)', () => {
    expect(isVerified({ verified: true, redundancy: 3, votes: [vote(0, 1, 0, 0, 1), vote(1, 3, 0, 0, 3)] })).toBe(false);
  });

  it('is false when the server says not verified, whatever the counts', () => {
    expect(isVerified({ verified: false, redundancy: 3, votes: [vote(0, 3, 0, 0, 3)] })).toBe(false);
  });

  it('is false without any stage vote', () => {
    expect(isVerified({ verified: true, redundancy: 3, votes: [] })).toBe(false);
  });
});

describe('stageVoteText', () => {
  it('keeps agreed, disagreed and late apart', () => {
    expect(stageVoteText(vote(1, 2, 0, 1, 3))).toBe('stage 1: 2 agreed, 0 disagreed, 1 late, of 3');
    expect(stageVoteText(vote(0, 2, 1, 0, 3))).toBe('stage 0: 2 agreed, 1 disagreed, 0 late, of 3');
  });
});

describe('verdictText', () => {
  it('names the majority when verified', () => {
    expect(verdictText({ verified: true, redundancy: 3, votes: [vote(0, 2, 0, 1, 3)] })).toBe(
      'verified: agreed by a majority (2 of 3) of the replicas at every stage',
    );
  });

  it('says "not verified" and why', () => {
    expect(verdictText({ verified: false, redundancy: 1, votes: [vote(0, 1, 0, 0, 1)] })).toBe(
      'not verified: redundancy is 1, so no other replica checked this token',
    );
    expect(verdictText({ verified: true, redundancy: 3, votes: [vote(0, 3, 0, 0, 3), vote(1, 1, 1, 1, 3)] })).toBe(
      'not verified: stage 1 had 1 agreeing of 3, a majority needs 2',
    );
    expect(verdictText({ verified: false, redundancy: 3, votes: [vote(0, 3, 0, 0, 3)] })).toBe(
      'not verified: the coordinator did not verify this token',
    );
  });
});

describe('legendText', () => {
  it('says what green means, with r once known', () => {
    expect(legendText(null)).toEqual({ green: 'agreed by a majority of the r replicas at every stage', unverified: 'not verified' });
    expect(legendText(3)).toEqual({ green: 'agreed by a majority (2) of the r = 3 replicas at every stage', unverified: 'not verified' });
    expect(legendText(4).green).toContain('majority (3) of the r = 4');
  });

  it('with r = 1 says that nothing is green and that the tokens are not verified', () => {
    expect(legendText(1).green).toContain('r = 1, so no token is green');
    expect(legendText(1).unverified).toContain('not verified');
  });
});
