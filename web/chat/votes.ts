// What the chat page says about a token's vote: pure functions over the
// TokenEvent the coordinator sends, kept apart from React so they are tested alone.
import type { StageVote, TokenEvent } from '../../shared/protocol/messages.js';

/** Replicas that must agree at a stage for a token to count as verified: a majority ⌊r/2⌋+1 of the configured r. */
export function majorityOf(redundancy: number): number {
  return Math.floor(redundancy / 2) + 1;
}

/**
 * Whether the page may mark a token verified (green). The server's `verified`
 * flag is necessary but not trusted alone: the page also checks that r ≥ 2 and
 * that every stage's agreed count reaches the majority of r, so a route
 * shorter than r (one replica voting "1 of 1") is never shown green, nor is
 * a token a stage of which the server computed (the fallback).
 */
export function isVerified(t: Pick<TokenEvent, 'verified' | 'redundancy' | 'votes'>): boolean {
  const m = majorityOf(t.redundancy);
  return t.verified && t.redundancy >= 2 && t.votes.length > 0 && t.votes.every((v) => !v.server && v.agreed >= m);
}

/** The stages the server computed itself for this token (the fallback: too few volunteers), not volunteers. */
export function serverStages(t: Pick<TokenEvent, 'votes'>): number[] {
  return t.votes.filter((v) => v.server).map((v) => v.stage);
}

/**
 * The run summary's note on the tokens the server computed (the fallback), empty when none: those it computed
 * alone (every stage) told apart from those it computed in part (before, a run the server computed wholly said "in
 * part").
 */
export function serverShareText(tokens: readonly Pick<TokenEvent, 'votes'>[]): string {
  let alone = 0;
  let part = 0;
  for (const t of tokens) {
    const n = serverStages(t).length;
    if (n > 0 && n === t.votes.length) alone += 1;
    else if (n > 0) part += 1;
  }
  const said = [
    ...(alone > 0 ? [`${alone} computed by the server alone`] : []),
    ...(part > 0 ? [`${part} computed in part by the server`] : []),
  ];
  return said.length === 0 ? '' : ` (${said.join(', ')}: too few volunteers)`;
}

/** One stage's vote in words: agreed, disagreed and late kept apart (a late replica is not a dissent). */
export function stageVoteText(v: StageVote): string {
  if (v.server) return `stage ${v.stage}: computed by the server (fallback), not by volunteers`;
  return `stage ${v.stage}: ${v.agreed} agreed, ${v.disagreed} disagreed, ${v.missing} late, of ${v.replicas}`;
}

/** Why a token is or is not verified, in one sentence that contains "not verified" when it is not. */
export function verdictText(t: Pick<TokenEvent, 'verified' | 'redundancy' | 'votes'>): string {
  const r = t.redundancy;
  const m = majorityOf(r);
  if (isVerified(t)) return `verified: agreed by a majority (${m} of ${r}) of the replicas at every stage`;
  const server = serverStages(t);
  if (server.length > 0)
    return `not verified by volunteers: the server computed stage${server.length > 1 ? 's' : ''} ${server.join(', ')} itself (fallback: too few volunteers)`;
  if (r < 2) return `not verified: redundancy is ${r}, so no other replica checked this token`;
  const short = t.votes.find((v) => v.agreed < m);
  if (short !== undefined) return `not verified: stage ${short.stage} had ${short.agreed} agreeing of ${r}, a majority needs ${m}`;
  return 'not verified: the coordinator did not verify this token';
}

/**
 * The legend under the output, after a green and a dashed sample: what each
 * marking means, given the redundancy r once a token has told it.
 */
export function legendText(redundancy: number | null): { green: string; unverified: string } {
  if (redundancy === null) {
    return { green: 'agreed by a majority of the r replicas at every stage', unverified: 'not verified' };
  }
  if (redundancy < 2) {
    return {
      green: `agreed by a majority of the r replicas at every stage; this server runs r = ${redundancy}, so no token is green`,
      unverified: 'not verified (each stage ran on one replica: nothing checked it)',
    };
  }
  return {
    green: `agreed by a majority (${majorityOf(redundancy)}) of the r = ${redundancy} replicas at every stage`,
    unverified: 'not verified',
  };
}
