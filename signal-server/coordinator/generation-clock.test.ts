// A GenerationSession on a manual clock: its timeouts (the join grace, a
// step's) and its step durations, checked to the millisecond without waiting
// real seconds. The replicas are the test: it answers for them through the
// session's own inbound calls (onJoined, onDigest, onLogits).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StageManifest } from '../../shared/model/manifest.js';
import { GREEDY } from '../../shared/model/sampling.js';
import type { SessionOpen, StepInput } from '../../shared/protocol/messages.js';
import { fingerprint } from '../../shared/vote/fingerprint.js';
import { goldenModelDir } from '../../testing/golden.js';
import { LogitsForm } from '../../testing/logits-form.js';
import { ManualClock } from '../../testing/manual-clock.js';
import { ensureStages } from '../models/model-folder.js';
import { Audit } from './audit.js';
import { GenerationError, GenerationSession, JOIN_GRACE_MS, type RetryHooks, type SessionTransport } from './generation.js';
import { NEWCOMER_GRACE_MS } from './newcomer-joins.js';
import { shouldEvict } from './reputation.js';
import { carriedOn, SILENT_FLOOR_MS, SILENT_PACE, type SilenceCarry } from './silent-members.js';

const TIMEOUTS = { joinMs: 60_000, stepMs: 30_000 };
/** The whole file runs on the manual clock: far below the JOIN_GRACE_MS + stepMs it simulates. */
const REAL_MS_BOUND = 5_000;

let cache: string;
let manifest: StageManifest;
/** The same model in two stages, for neighbours. */
let twoStages: StageManifest;
beforeAll(async () => {
  cache = mkdtempSync(join(tmpdir(), 'webswarm-clock-'));
  // One stage: its replicas send the logits, and the route is one list.
  manifest = (await ensureStages(goldenModelDir('tiny-untied'), { stages: 1 }, cache)).manifest;
  twoStages = (await ensureStages(goldenModelDir('tiny-untied'), { stages: 2 }, cache)).manifest;
});
afterAll(() => rmSync(cache, { recursive: true, force: true }));

/** What the session sent, per volunteer. */
function recordingTransport(): SessionTransport & {
  opened: string[];
  inputs: { to: string; m: StepInput }[];
  closed: string[];
  /** A row of logits as a last-stage replica sends it: the top form its session:open asked for (topLogits), or the row. */
  sent: (row: Float32Array, position?: number) => Float32Array;
} {
  const opened: string[] = [];
  const form = new LogitsForm();
  const inputs: { to: string; m: StepInput }[] = [];
  const closed: string[] = [];
  return {
    opened,
    inputs,
    closed,
    sent: (row, position) => form.sent(row, position),
    open: (v: string, m: SessionOpen) => {
      opened.push(v);
      form.opened(m);
    },
    update: () => {},
    input: (v, m) => inputs.push({ to: v, m }),
    close: (v) => closed.push(v),
  };
}

function spareHooks(spares: readonly string[]): RetryHooks & { noShows: string[]; why: string[]; showedUp: string[]; takenOut: string[] } {
  const noShows: string[] = [];
  const why: string[] = [];
  const showedUp: string[] = [];
  const takenOut: string[] = [];
  return {
    noShows,
    why,
    showedUp,
    takenOut,
    spares: (_stage, exclude) => spares.filter((id) => !exclude.has(id)),
    link: () => {},
    noShow: (v, w = 'absent') => {
      noShows.push(v);
      why.push(`${v} ${w}`);
    },
    showed: (v) => showedUp.push(v),
  };
}

/** Logits over the model's vocabulary whose argmax is `token`. */
function logitsFor(token: number): Float32Array {
  const l = new Float32Array(manifest.model.vocabSize);
  l[token] = 10;
  return l;
}

/** The two-stage tests' route. */
const TWO_STAGES = [
  ['a', 'b', 'c'],
  ['d', 'e', 'f'],
];
/** Stage 0's output in the two-stage tests (what stage 1 reports as its input). */
const HIDDEN = new Float32Array([1, 2, 3, 4]);

/** The newcomer tests' timeouts: a join timeout well inside a step's. */
const NEWCOMER_TIMEOUTS = { joinMs: 20_000, stepMs: 60_000 };

/**
 * A session of replicas a, b and c (one stage, unless `route` and `stages` say otherwise) at r = 3 on a manual
 * clock, with spare hooks that record no-shows, and a way to answer a step for some of its replicas: each the
 * same logits (token 5), on the step's input (the prompt [1, 2, 3], then [5]).
 */
function rig(
  id: number,
  o: {
    route?: string[][];
    stages?: StageManifest;
    timeouts?: { joinMs: number; stepMs: number };
    spares?: string[];
    serve?: string;
    /** What the coordinator does with a member the session takes out (SessionRunner.failOver), as the test does it. */
    takeOut?: (id: string, session: GenerationSession) => void;
    audit?: Audit;
    /** A scored prompt's tokens go to stage 0 ahead (SessionRunner: MESH_LOOP on). */
    scoreAhead?: boolean;
  } = {},
) {
  const clock = new ManualClock();
  const transport = recordingTransport();
  const hooks = { ...spareHooks(o.spares ?? []), ...(o.serve === undefined ? {} : { serve: () => o.serve as string }) };
  hooks.takeOut = (id) => {
    hooks.takenOut.push(id);
    o.takeOut?.(id, session);
  };
  const timeouts = o.timeouts ?? NEWCOMER_TIMEOUTS;
  const policy = { redundancy: 3, established: () => false, trusted: (v: string) => v === o.serve };
  const session = new GenerationSession(
    id,
    o.route ?? [['a', 'b', 'c']],
    o.stages ?? manifest,
    transport,
    timeouts,
    o.audit ?? new Audit(),
    hooks,
    policy,
    clock,
    false,
    false,
    o.scoreAhead ?? false,
  );
  const logits = logitsFor(5);
  /** Reports `step` for `vs`, each computed in `ms`. */
  const answerIn = async (ms: number, step: number, ...vs: string[]) => {
    const input = step === 0 ? [1, 2, 3] : [5];
    for (const v of vs) {
      session.onDigest(v, step, fingerprint(logits), ms, fingerprint(input));
      session.onLogits(v, step, transport.sent(logits));
    }
    await clock.advance(0);
  };
  const answer = (step: number, ...vs: string[]) => answerIn(step === 0 ? 3 : 1, step, ...vs);
  /** Runs a greedy generation of `steps` tokens on the prompt [1, 2, 3], every replica of the route joined. */
  const start = (steps: number): Promise<{ done: ReturnType<GenerationSession['run']> }> => {
    const done = session.run([1, 2, 3], steps, GREEDY, () => {});
    for (const v of (o.route ?? [['a', 'b', 'c']]).flat()) session.onJoined(v);
    return clock.advance(0).then(() => ({ done }));
  };
  /** Two stages: reports `step` of `stage` for `vs`, each computed in `ms` (stage 0 passes on HIDDEN). */
  const answerAt = async (stage: number, step: number, ms: number, ...vs: string[]) => {
    const input = step === 0 ? [1, 2, 3] : [5];
    for (const v of vs) {
      if (stage === 0) session.onDigest(v, step, fingerprint(HIDDEN), ms, fingerprint(input));
      else {
        session.onDigest(v, step, fingerprint(logits), ms, fingerprint(HIDDEN));
        session.onLogits(v, step, transport.sent(logits));
      }
    }
    await clock.advance(0);
  };
  return { clock, transport, hooks, timeouts, session, answer, answerIn, answerAt, start };
}

describe('a generation session on a manual clock', () => {
  it('replaces a no-show by a spare JOIN_GRACE_MS after a majority joined, not a millisecond before; then times the step out', async () => {
    const started = performance.now();
    const clock = new ManualClock();
    const transport = recordingTransport();
    const hooks = spareHooks(['spare']);
    const session = new GenerationSession(
      1,
      [['a', 'b', 'c']],
      manifest,
      transport,
      TIMEOUTS,
      new Audit(),
      hooks,
      { redundancy: 3, established: () => false },
      clock,
    );
    const outcome = outcomeOf(session, 4);
    expect(transport.opened).toEqual(['a', 'b', 'c']);
    session.onJoined('a');
    await clock.advance(1_000);
    session.onJoined('b');
    // A majority (2 of 3) has joined at t = 1 000 ms: c gets JOIN_GRACE_MS more.
    await clock.advance(JOIN_GRACE_MS - 1);
    expect(hooks.noShows).toEqual([]);
    expect(transport.opened).toEqual(['a', 'b', 'c']);
    await clock.advance(1);
    expect(hooks.noShows).toEqual(['c']);
    expect(transport.closed).toEqual(['c']);
    expect(transport.opened).toEqual(['a', 'b', 'c', 'spare']);
    expect(session.route).toEqual([['a', 'b', 'spare']]);
    expect(session.replacements).toEqual([{ stage: 0, left: 'c', joined: 'spare', atStep: 0 }]);
    // The spare joins: step 0 starts, on the route as it now stands.
    session.onJoined('spare');
    await clock.advance(0);
    expect(transport.inputs.map((x) => [x.to, x.m.step, x.m.tokens])).toEqual([
      ['a', 0, [1, 2, 3]],
      ['b', 0, [1, 2, 3]],
      ['spare', 0, [1, 2, 3]],
    ]);
    // No replica answers: the step times out at stepMs, not before.
    await clock.advance(TIMEOUTS.stepMs - 1);
    expect(transport.closed).toEqual(['c']);
    await clock.advance(1);
    const e = await outcome;
    expect(e).toBeInstanceOf(GenerationError);
    expect(e).toMatchObject({
      code: 'ERR_STEP_TIMEOUT',
      message: `step 0: no majority (2 of 3) of stage 0's logits within ${TIMEOUTS.stepMs} ms`,
    });
    expect(transport.closed.sort()).toEqual(['a', 'b', 'c', 'spare']);
    expect(clock.now()).toBe(1_000 + JOIN_GRACE_MS + TIMEOUTS.stepMs);
    expect(clock.pending, 'timers left behind').toBe(0);
    expect(performance.now() - started).toBeLessThan(REAL_MS_BOUND);
  });

  it('times a step by the clock: the record says how long the majority took', async () => {
    const clock = new ManualClock();
    const transport = recordingTransport();
    const session = new GenerationSession(2, [['a', 'b', 'c']], manifest, transport, TIMEOUTS, new Audit(), null, undefined, clock);
    const records: { token: number; ms: number }[] = [];
    const done = session.run([1, 2, 3], 1, GREEDY, (token, r) => {
      records.push({ token, ms: r.ms });
    });
    for (const v of ['a', 'b', 'c']) session.onJoined(v);
    await clock.advance(0);
    expect(transport.inputs.map((x) => x.to)).toEqual(['a', 'b', 'c']);
    const logits = logitsFor(5);
    // What a replica reports: the fingerprints of its output and of the input it computed on (the token ids sent).
    const report = (v: string) => session.onDigest(v, 0, fingerprint(logits), 3, fingerprint([1, 2, 3]));
    // Two replicas answer 7 ms and 12 ms after the input went out: the majority is there at 12 ms.
    await clock.advance(7);
    report('a');
    session.onLogits('a', 0, transport.sent(logits));
    await clock.advance(5);
    report('b');
    session.onLogits('b', 0, transport.sent(logits));
    // c never answers: identical logits are settled, so it is not waited for.
    expect(await done).toEqual({ tokens: [5], finishReason: 'length' });
    expect(records).toEqual([{ token: 5, ms: 12 }]);
    expect(clock.pending, 'timers left behind').toBe(0);
  });

  it('holds a newcomer brought in mid-session to join as the first replicas are: silent for the join timeout or refusing, a no-show; joined, none', async () => {
    const { clock, hooks, timeouts, session, answer, start } = rig(3);
    const { done } = await start(4);
    // The first replicas joined before the session started (SessionJoin judged them): only the step is timed.
    expect(clock.pending).toBe(1);
    await answer(0, 'a', 'b', 'c');
    // Step 1: c leaves, s1 takes its place and never joins: nothing until its join timeout runs out, then a no-show.
    session.onLeft('c');
    expect(session.replace('c', 's1')).toBe(true);
    await clock.advance(timeouts.joinMs - 1);
    expect(hooks.why).toEqual([]);
    await clock.advance(1);
    expect(hooks.why).toEqual(['s1 absent']);
    await answer(1, 'a', 'b');
    // Step 2: s2 in s1's place refuses as full: a no-show at once (its own server judges "full"), once.
    expect(session.replace('s1', 's2')).toBe(true);
    session.onFailure('s2', 2, 'ERR_REPLICA_FULL', 'this replica keeps 16 sessions open already');
    session.onFailure('s2', 2, 'ERR_REPLICA_FULL', 'again');
    expect(hooks.why).toEqual(['s1 absent', 's2 full']);
    // s3 in s2's place joins a millisecond within its timeout: it showed up, and is no no-show.
    expect(session.replace('s2', 's3')).toBe(true);
    await clock.advance(timeouts.joinMs - 1);
    session.onJoined('s3');
    await clock.advance(timeouts.joinMs);
    expect(hooks.showedUp).toEqual(['a', 'b', 'c', 's3']);
    await answer(2, 'a', 'b', 's3');
    // Step 3: s4 in b's place, taken out again (another repair's choice) within NEWCOMER_GRACE_MS: not judged. s5 in
    // its place, taken out NEWCOMER_GRACE_MS later unjoined: a no-show then. s6 in its place: the session ends before its
    // join timeout runs out; it is not judged, and no timer is left behind.
    session.onLeft('b');
    expect(session.replace('b', 's4')).toBe(true);
    await clock.advance(NEWCOMER_GRACE_MS - 1);
    expect(session.replace('s4', 's5')).toBe(true);
    await clock.advance(NEWCOMER_GRACE_MS);
    expect(hooks.why).toEqual(['s1 absent', 's2 full']);
    expect(session.replace('s5', 's6')).toBe(true);
    expect(hooks.why).toEqual(['s1 absent', 's2 full', 's5 absent']);
    await answer(3, 'a', 's3');
    expect(await done).toEqual({ tokens: [5, 5, 5, 5], finishReason: 'length' });
    expect(hooks.why).toEqual(['s1 absent', 's2 full', 's5 absent']);
    expect(clock.pending, 'timers left behind').toBe(0);
  });

  it('does not judge a newcomer the server takes its stage from within NEWCOMER_GRACE_MS (serve), nor leaves its timer running', async () => {
    const { clock, hooks, timeouts, session, answer, start } = rig(4, { serve: 'srv' });
    const { done } = await start(2);
    await answer(0, 'a', 'b', 'c');
    // Step 1: c leaves, s1 takes its place; a second later the others leave with no spare: the server takes the stage.
    session.onLeft('c');
    expect(session.replace('c', 's1')).toBe(true);
    await clock.advance(1_000);
    expect(session.serve(0, 'a and b left and no spare is ready')).toBe(true);
    expect(session.route).toEqual([['srv']]);
    session.onJoined('srv');
    // s1 was taken out of the route 1 s after it came: not judged, at its join timeout or ever.
    await clock.advance(timeouts.joinMs);
    expect(hooks.why).toEqual([]);
    await answer(1, 'srv');
    expect(await done).toEqual({ tokens: [5, 5], finishReason: 'length' });
    expect(hooks.why).toEqual([]);
    expect(clock.pending, 'timers left behind').toBe(0);
  });

  it('does not count a newcomer\'s "my inputs had no majority" (evidence about the stage before) as a refusal', async () => {
    const { clock, hooks, session, answer, start } = rig(5);
    const { done } = await start(2);
    await answer(0, 'a', 'b', 'c');
    session.onLeft('c');
    expect(session.replace('c', 's1')).toBe(true);
    // Frames reach s1 while it waits out LINK_GRACE_MS for its last neighbours; they do not agree: it says so, then joins.
    session.onFailure('s1', 1, 'ERR_NO_QUORUM', 'stage 0: the inputs from stage -1 do not agree');
    await clock.advance(1_000);
    session.onJoined('s1');
    expect(hooks.why).toEqual([]);
    expect(hooks.showedUp).toEqual(['a', 'b', 'c', 's1']);
    await answer(1, 'a', 'b', 's1');
    expect(await done).toEqual({ tokens: [5, 5], finishReason: 'length' });
    expect(hooks.why).toEqual([]);
    expect(clock.pending, 'timers left behind').toBe(0);
  });

  it("excuses a newcomer that could not link to a neighbouring stage with a replica gone, and no other's refusal", async () => {
    const { clock, hooks, session } = rig(6, {
      route: [
        ['a', 'b', 'c'],
        ['d', 'e', 'f'],
      ],
      stages: twoStages,
    });
    const outcome = outcomeOf(session, 2);
    for (const v of ['a', 'b', 'c', 'd', 'e', 'f']) session.onJoined(v);
    await clock.advance(0);
    // d of stage 1 leaves and no spare takes its place: its slot is dead. s1 in a's place (stage 0) cannot link to
    // a majority of stage 1 (one hostile replica there would do it now): not judged.
    session.onLeft('d');
    session.onLeft('a');
    expect(session.replace('a', 's1')).toBe(true);
    session.onFailure('s1', 0, 'ERR_NOT_LINKED', 'no data channel to a majority of stage 1');
    expect(hooks.why).toEqual([]);
    // Any other refusal beside the dead slot still counts.
    session.onLeft('b');
    expect(session.replace('b', 's2')).toBe(true);
    session.onFailure('s2', 0, 'ERR_REPLICA_FULL', 'this replica keeps 16 sessions open already');
    expect(hooks.why).toEqual(['s2 full']);
    // And ERR_NOT_LINKED where no neighbouring replica is gone: stage 1's newcomer s3, whose neighbours are stage 0's.
    session.onLeft('e');
    expect(session.replace('e', 's3')).toBe(true);
    session.onFailure('s3', 0, 'ERR_NOT_LINKED', 'no data channel to a majority of stage 0');
    expect(hooks.why).toEqual(['s2 full', 's3 absent']);
    // s1 was excused: no longer awaited, so its join timeout does not strike it later either.
    await clock.advance(60_000);
    expect(await outcome).toBeInstanceOf(GenerationError);
    expect(hooks.why).toEqual(['s2 full', 's3 absent']);
    expect(clock.pending, 'timers left behind').toBe(0);
  });

  it('does not strike a replica that went before it joined with no spare to take its place (moved, or left: judged as it left)', async () => {
    const { clock, hooks, session } = rig(8, { timeouts: TIMEOUTS });
    const outcome = outcomeOf(session, 1);
    session.onJoined('a');
    session.onJoined('b');
    // c is moved to another stage (or its connection closed) before it joined, with no spare: SessionRunner.failOver.
    session.onLeft('c');
    await clock.advance(JOIN_GRACE_MS);
    // Before: struck as a no-show at the end of the round, for a move the server made.
    expect(hooks.noShows).toEqual([]);
    await clock.advance(TIMEOUTS.stepMs);
    expect(await outcome).toBeInstanceOf(GenerationError);
    expect(clock.pending, 'timers left behind').toBe(0);
  });

  it('strikes a replica moved out with no spare before it joined once it held the session up JOIN_GRACE_MS, or had refused it', async () => {
    const { clock, hooks, session } = rig(10, { timeouts: TIMEOUTS, route: [['a', 'b', 'c', 'd', 'e']] });
    const outcome = outcomeOf(session, 1);
    await clock.advance(0);
    session.onJoined('a');
    session.onFailure('d', 0, 'ERR_NOT_LINKED', 'could not link');
    // Within the grace: b moved out while it linked is not struck; d, which refused, is.
    await clock.advance(JOIN_GRACE_MS - 1);
    session.onLeft('b');
    session.onLeft('d');
    expect(hooks.noShows).toEqual(['d']);
    // c held the session up JOIN_GRACE_MS unjoined: moved out now (an accomplice's departure made it), a no-show.
    await clock.advance(1);
    session.onLeft('c');
    expect(hooks.noShows).toEqual(['d', 'c']);
    // Gone: nothing more to say of them at their departure (Roster.left), nor of them again at the round's end.
    expect(['b', 'c', 'd'].map((v) => session.unjoinedAs(v))).toEqual([null, null, null]);
    session.onJoined('e');
    await clock.advance(TIMEOUTS.joinMs);
    expect(hooks.noShows).toEqual(['d', 'c']);
    await clock.advance(TIMEOUTS.stepMs);
    expect(await outcome).toBeInstanceOf(GenerationError);
    expect(clock.pending, 'timers left behind').toBe(0);
  });

  it('says what a replica would be if it went now (Roster.left): unjoined or refused before the start, a no-show; joined, none', async () => {
    const { clock, session } = rig(9, { timeouts: TIMEOUTS, route: [['a', 'b', 'c', 'd']] });
    const outcome = outcomeOf(session, 1);
    await clock.advance(0);
    session.onJoined('a');
    // c refuses (a departure before the others joined went unjudged: the round skips those that went), d as full.
    session.onFailure('c', 0, 'ERR_NOT_LINKED', 'could not link');
    session.onFailure('d', 0, 'ERR_REPLICA_FULL', 'this replica keeps 16 sessions open already');
    // "My inputs had no majority" is no refusal: still waited for.
    session.onFailure('b', 0, 'ERR_NO_QUORUM', 'no majority');
    expect(['a', 'b', 'c', 'd', 'x'].map((v) => session.unjoinedAs(v))).toEqual([null, 'absent', 'absent', 'full', null]);
    session.onJoined('b');
    await clock.advance(TIMEOUTS.joinMs);
    // Started: those joined are members that joined; the round judged the rest.
    expect(['a', 'b'].map((v) => session.unjoinedAs(v))).toEqual([null, null]);
    await clock.advance(TIMEOUTS.stepMs);
    expect(await outcome).toBeInstanceOf(GenerationError);
    expect(clock.pending, 'timers left behind').toBe(0);
  });

  it('strikes the replicas missing after the last join round too, not only those of the rounds before it', async () => {
    const { clock, hooks, session } = rig(7, { timeouts: TIMEOUTS, spares: ['s1', 's2', 's3'] });
    const outcome = outcomeOf(session, 1);
    session.onJoined('a');
    session.onJoined('b');
    // Three rounds, each JOIN_GRACE_MS after the majority: c, then its spare s1, then s1's spare s2 never join.
    for (let round = 0; round < 3; round++) await clock.advance(JOIN_GRACE_MS);
    expect(hooks.noShows).toEqual(['c', 's1', 's2']);
    expect(session.route).toEqual([['a', 'b', 's2']]);
    // The session goes on with its majority; ended here by its step's timeout.
    await clock.advance(TIMEOUTS.stepMs);
    expect(await outcome).toBeInstanceOf(GenerationError);
    expect(clock.pending, 'timers left behind').toBe(0);
  });
});

/** Runs a greedy generation of `steps` tokens on the prompt [1, 2, 3], nobody joined yet: its error, or null. */
function outcomeOf(session: GenerationSession, steps: number): Promise<unknown> {
  return session
    .run([1, 2, 3], steps, GREEDY, () => {})
    .then(
      () => null,
      (e: unknown) => e,
    );
}

/** `n` tokens of the rig's answer (token 5). */
const fives = (n: number) => Array.from({ length: n }, () => 5);

describe('a member that joins a session and then sends no results', () => {
  it('is a no-show once unheard for its stage limit while steps are decided, not a millisecond before; a spare takes its place', async () => {
    const { clock, hooks, transport, session, answer, start } = rig(8, { spares: ['s1'], takeOut: (v, s) => s.replace(v, 's1') });
    const { done } = await start(6);
    // c joined and computes nothing; a and b decide every step (in 3 ms, then 1 ms: the floor is the limit).
    await answer(0, 'a', 'b');
    await clock.advance(SILENT_FLOOR_MS - 1);
    await answer(1, 'a', 'b');
    await answer(2, 'a', 'b');
    expect(hooks.why).toEqual([]);
    await clock.advance(1);
    await answer(3, 'a', 'b');
    // Judged as step 4 begins: unheard for SILENT_FLOOR_MS with steps decided.
    expect(hooks.why).toEqual(['c silent']);
    expect(hooks.takenOut).toEqual(['c']);
    expect(session.route).toEqual([['a', 'b', 's1']]);
    expect(transport.closed).toEqual(['c']);
    // The spare joins and rebuilds its cache (its replayed steps are heard), then takes part.
    session.onJoined('s1');
    for (let step = 0; step < 4; step++) await answer(step, 's1');
    await answer(4, 'a', 'b', 's1');
    await answer(5, 'a', 'b', 's1');
    expect(await done).toEqual({ tokens: fives(6), finishReason: 'length' });
    // Once, and nobody else.
    expect(hooks.why).toEqual(['c silent']);
    expect(clock.pending, 'timers left behind').toBe(0);
  });

  it('is not an honest replica slower than the others, heard each time it reports late; its stage pace sets the limit', async () => {
    const { clock, hooks, answer, answerIn, start } = rig(9);
    const { done } = await start(26);
    // The prompt's step took the stage's majority 1 s (its second fastest: a claim of 1 ms alone moves nothing).
    await answerIn(1, 0, 'a');
    // (A second passes: no claim counts for longer than the step has run.)
    await clock.advance(1_000);
    await answerIn(1_000, 0, 'b');
    const limit = SILENT_PACE * 1_000;
    // c is five times slower: it reports each step 5 s after the majority decided it, and is heard each time.
    for (let step = 1; step <= 22; step++) {
      await clock.advance(1_000);
      if (step % 5 === 0 && step <= 15) await answer(step / 5 - 1, 'c');
      await answer(step, 'a', 'b');
    }
    expect(hooks.why).toEqual([]);
    // Its last report (step 2) came at 15 s: at 23 s less a millisecond it is still within the limit; at 23 s, out.
    expect(limit).toBe(8_000);
    await clock.advance(999);
    await answer(23, 'a', 'b');
    expect(hooks.why).toEqual([]);
    await clock.advance(1);
    await answer(24, 'a', 'b');
    expect(hooks.why).toEqual(['c silent']);
    await answer(25, 'a', 'b');
    expect(await done).toEqual({ tokens: fives(26), finishReason: 'length' });
    expect(clock.pending, 'timers left behind').toBe(0);
  });

  it('is not kept in by failures, a report sent again, or joining again; with no spare the stage goes on without it', async () => {
    // No spare: the coordinator marks it gone (SessionRunner.failOver), and the stage goes on with its majority.
    const { clock, hooks, session, answer, start } = rig(10, { takeOut: (v, s) => s.onLeft(v) });
    const { done } = await start(13);
    await answer(0, 'a', 'b', 'c');
    for (let step = 1; step < 13; step++) {
      // What a client can send without computing: a failure, its step-0 report again, "joined" again.
      session.onFailure('c', step, 'ERR_INTERNAL', 'busy');
      await answer(0, 'c');
      session.onJoined('c');
      await clock.advance(500);
      await answer(step, 'a', 'b');
    }
    // Heard last at 0 ms (step 0); the floor passed at step 10 (5 s), judged as step 11 began.
    expect(SILENT_FLOOR_MS).toBe(5_000);
    expect(hooks.why).toEqual(['c silent']);
    expect(hooks.takenOut).toEqual(['c']);
    expect(await done).toEqual({ tokens: fives(13), finishReason: 'length' });
    expect(hooks.why).toEqual(['c silent']);
    expect(clock.pending, 'timers left behind').toBe(0);
  });

  it('is not judged while a sender of its stage is gone (one hostile sender could starve it), nor at the end for that time', async () => {
    const { clock, hooks, session, answerAt, start } = rig(11, { route: TWO_STAGES, stages: twoStages });
    const { done } = await start(8);
    // a of stage 0 leaves with no spare at step 0; f of stage 1 never reports. 14 s pass.
    session.onLeft('a');
    for (let step = 0; step < 8; step++) {
      await answerAt(0, step, 1, 'b', 'c');
      await answerAt(1, step, 1, 'd', 'e');
      await clock.advance(2_000);
    }
    expect(await done).toEqual({ tokens: fives(8), finishReason: 'length' });
    expect(hooks.why).toEqual([]);
    expect(clock.pending, 'timers left behind').toBe(0);
  });

  it('is not excused by a sender of the stage before that is slow but heard', async () => {
    const { clock, hooks, answerAt, start } = rig(12, {
      route: TWO_STAGES,
      stages: twoStages,
      takeOut: (v, ses) => ses.onLeft(v),
    });
    const { done } = await start(16);
    // c (honest) is four times slower than a and b: it reports a step every 2 s, and is heard each time. f reports nothing.
    let cNext = 0;
    for (let step = 0; step < 16; step++) {
      await clock.advance(500);
      if (step % 4 === 0) await answerAt(0, cNext++, 1, 'c');
      await answerAt(0, step, 1, 'a', 'b');
      await answerAt(1, step, 1, 'd', 'e');
    }
    expect(await done).toEqual({ tokens: fives(16), finishReason: 'length' });
    expect(hooks.why).toEqual(['f silent']);
  });

  it('is not an honest member starved by one hostile sender while a stage-mate of that sender stalls (limits differ per stage)', async () => {
    const { clock, hooks, answerAt, start } = rig(13, {
      route: TWO_STAGES,
      stages: twoStages,
      takeOut: (v, ses) => ses.onLeft(v),
    });
    const { done } = await start(20);
    // The prompt took stage 0 a second (its limit: 8 s), stage 1 a millisecond (its limit: the 5 s floor).
    await clock.advance(1_000);
    await answerAt(0, 0, 1_000, 'a', 'b', 'c');
    await answerAt(1, 0, 1, 'd', 'e', 'f');
    // Then c (honest) stalls (a throttled background tab), and b (hostile, computing and reporting truly) sends its
    // frames to d and e but not to f: f holds one input of three, no majority, and computes nothing.
    for (let step = 1; step < 20; step++) {
      await clock.advance(500);
      await answerAt(0, step, 10, 'a', 'b');
      await answerAt(1, step, 10, 'd', 'e');
    }
    expect(await done).toEqual({ tokens: fives(20), finishReason: 'length' });
    // c is silent at 8 s and leaves (its slot dead from then on); f, unheard while c was quiet, is not judged.
    expect(hooks.why).toEqual(['c silent']);
  });

  it('is not an honest member starved by a hostile sender whose stage-mate is judged silent in the same pass, at the end', async () => {
    const { clock, hooks, answerAt, start } = rig(19, { route: TWO_STAGES, stages: twoStages });
    // 11 steps 500 ms apart: c (stage 0) and f (stage 1) are last heard at step 0, so both reach the 5 s floor only
    // when the last step is decided, and are judged together at the session's end (nobody taken out then).
    const { done } = await start(11);
    await answerAt(0, 0, 10, 'a', 'b', 'c');
    await answerAt(1, 0, 10, 'd', 'e', 'f');
    // c stalls; b (hostile, computing and reporting truly) sends its frames to d and e but not to f: f holds one
    // input of three, no majority, and computes nothing.
    for (let step = 1; step < 11; step++) {
      await clock.advance(500);
      await answerAt(0, step, 10, 'a', 'b');
      await answerAt(1, step, 10, 'd', 'e');
    }
    expect(await done).toEqual({ tokens: fives(11), finishReason: 'length' });
    // c is judged; f, starved while c was quiet, is excused though c was judged (and forgotten) before it.
    expect(hooks.why).toEqual(['c silent']);
  });

  it('is not heard through logits alone (noise of the right size is audited nowhere)', async () => {
    const audit = new Audit();
    const { clock, hooks, session, transport, answer, start } = rig(14, { takeOut: (v, s) => s.onLeft(v), audit });
    const { done } = await start(13);
    await answer(0, 'a', 'b');
    // c never computes: each step it sends noise of the right size as its logits, and no digest, 500 ms apart.
    const noise = logitsFor(7);
    for (let step = 1; step < 13; step++) {
      session.onLogits('c', step, transport.sent(noise));
      await clock.advance(500);
      await answer(step, 'a', 'b');
    }
    expect(await done).toEqual({ tokens: fives(13), finishReason: 'length' });
    // The audit counts digests only: the noise left no mark there, and c is out once the floor passed.
    expect(audit.get('c')).toEqual({ agreed: 0, disagreed: 0 });
    expect(hooks.why).toEqual(['c silent']);
  });

  it("is not heard through a newcomer's replay reports that disagree with the agreed ones", async () => {
    const audit = new Audit();
    const { clock, hooks, session, answer, start } = rig(15, { spares: ['s1'], takeOut: (v, s) => s.replace(v, 's1'), audit });
    const { done } = await start(110);
    // 80 quick steps, then c (silent) is out after the floor and s1 takes its place at step 81.
    for (let step = 0; step < 80; step++) await answer(step, 'a', 'b');
    await clock.advance(SILENT_FLOOR_MS);
    await answer(80, 'a', 'b');
    expect(hooks.why).toEqual(['c silent']);
    session.onJoined('s1');
    // s1 rebuilds nothing: every 4.5 s it reports one more "replayed" step, a digest of noise. Its replay reports
    // fall outside every vote (the audit never sees them); they do not agree with the agreed ones, so not heard.
    const noise = [9, 9, 9, 9];
    for (let step = 81; step < 110; step++) {
      session.onDigest('s1', step - 81, noise, 1, noise);
      await clock.advance(4_500);
      await answer(step, 'a', 'b');
    }
    expect(await done).toEqual({ tokens: fives(110), finishReason: 'length' });
    expect(audit.get('s1')).toEqual({ agreed: 0, disagreed: 0 });
    expect(hooks.why).toEqual(['c silent', 's1 silent']);
  });

  it.each([
    [1.5, 300],
    [6, 800],
  ])(
    'is not an honest replica %sx slower than its stage-mates (within SILENT_PACE), however far behind it falls',
    async (slower, steps) => {
      const { clock, hooks, answerIn, start } = rig(16);
      const { done } = await start(steps);
      // a and b take 100 ms a step; c, honest, `slower` times as long, one step after the other (its cache needs them
      // in order): it finishes step s at that pace and reports it then, 100 steps behind or more by the end. Its
      // late reports agree with the agreed ones: heard each time. The limit is the floor.
      const ms = 100 * slower;
      let cDone = 0;
      for (let step = 0; step < steps; step++) {
        await clock.advance(100);
        while (ms * (cDone + 1) <= clock.now() && cDone <= step) await answerIn(ms, cDone++, 'c');
        await answerIn(100, step, 'a', 'b');
      }
      expect(await done).toEqual({ tokens: fives(steps), finishReason: 'length' });
      expect(steps - cDone).toBeGreaterThanOrEqual(100);
      expect(cDone).toBeGreaterThan(steps / SILENT_PACE);
      expect(hooks.why).toEqual([]);
    },
  );

  it('is judged behind when it computes one step per limit (a sham slow replica, 49x slower than its stage)', async () => {
    // c computes one step per 4.9 s (step 0, then 1, 2, ...: its cache stays true), so each report is new, agrees,
    // and comes within the limit; its stage makes 10 steps a second. Over twice the limit it reports fewer than one
    // in SILENT_PACE of the steps decided: behind, and out.
    const { clock, hooks, answerIn, start } = rig(30, { takeOut: (v, s) => s.onLeft(v) });
    const steps = 600;
    const { done } = await start(steps);
    let cDone = 0;
    let cNextAt = 4_900;
    for (let step = 0; step < steps; step++) {
      await clock.advance(100);
      if (clock.now() >= cNextAt) {
        await answerIn(100, cDone++, 'c');
        cNextAt += 4_900;
      }
      await answerIn(100, step, 'a', 'b');
    }
    expect(await done).toEqual({ tokens: fives(steps), finishReason: 'length' });
    // 60 s of session, 600 steps decided; c would have computed 12 of them (2 %), far more than SILENT_PACE times slower.
    expect(cDone).toBeLessThan(steps / SILENT_PACE / 4);
    expect(hooks.why).toEqual(['c silent']);
  });

  it('is not heard through noise digests of the step in flight, whatever its record', async () => {
    // The audit evicts only at 3 disagreements and a score under 0.4: a member with 100 agreements may send ~150
    // noise digests before that. One per 4.9 s would keep it heard if any report of the step in flight counted;
    // only one in its stage's agreeing group does.
    const audit = new Audit();
    audit.set('c', { agreed: 100, disagreed: 0 });
    const { clock, hooks, session, answerIn, start } = rig(31, { takeOut: (v, s) => s.onLeft(v), audit });
    const steps = 600;
    const { done } = await start(steps);
    const noise = [9, 9, 9, 9];
    let cNextAt = 4_900;
    for (let step = 0; step < steps; step++) {
      await clock.advance(100);
      if (clock.now() >= cNextAt) {
        // A digest of noise, of the step in flight.
        session.onDigest('c', step, noise, 1, noise);
        cNextAt += 4_900;
      }
      await answerIn(100, step, 'a', 'b');
    }
    expect(await done).toEqual({ tokens: fives(steps), finishReason: 'length' });
    // Its noise was counted (disagreements), not enough to evict it; it was silent all the same.
    expect(audit.get('c').disagreed).toBeGreaterThanOrEqual(10);
    expect(shouldEvict(audit.get('c'))).toBe(false);
    expect(hooks.why).toEqual(['c silent']);
  });

  it("keeps its stage's limit at the majority's pace whatever compute time one member claims", async () => {
    const { clock, hooks, answerIn, start } = rig(17, { takeOut: (v, s) => s.onLeft(v) });
    const { done } = await start(14);
    // c computes step 0 truly, among the first two, and claims it took 10^9 ms; then it computes nothing. No claim
    // counts for more than the time since the step could have begun: the majority's pace stays 3 ms.
    await answerIn(3, 0, 'a');
    await answerIn(1e9, 0, 'c');
    await answerIn(3, 0, 'b');
    for (let step = 1; step < 14; step++) {
      await clock.advance(1_000);
      await answerIn(3, step, 'a', 'b');
    }
    expect(await done).toEqual({ tokens: fives(14), finishReason: 'length' });
    // The limit stayed the 5 s floor (not the step timeout): c is out after it.
    expect(hooks.why).toEqual(['c silent']);
  });
});

describe('a scored prompt', () => {
  // The prompt [1] scored, then one token: steps 1..5 compute on the prompt's next tokens.
  const FORCED = [7, 8, 9, 10, 11];
  const inputOf = (step: number) => (step === 0 ? [1] : [FORCED[step - 1] as number]);
  const scoring = (scoreAhead: boolean) => {
    const r = rig(50, { scoreAhead });
    const forced: number[] = [];
    const done = r.session.run([1], 1, GREEDY, (t, rec) => (rec.forced === true ? forced.push(t) : undefined), 0, FORCED);
    for (const v of ['a', 'b', 'c']) r.session.onJoined(v);
    const report = async (step: number, ...vs: string[]) => {
      const out = logitsFor(5);
      for (const v of vs) {
        r.session.onDigest(v, step, fingerprint(out), 1, fingerprint(inputOf(step)));
        // Step s computes position s (the prompt is one token).
        r.session.onLogits(v, step, r.transport.sent(out, step));
      }
      await r.clock.advance(0);
    };
    /** The steps whose input each replica was sent, in order. */
    const sent = () => ['a', 'b', 'c'].map((v) => r.transport.inputs.filter((x) => x.to === v).map((x) => x.m.step));
    return { ...r, done, forced, report, sent };
  };

  it('sends its tokens to stage 0 up to MESH_AHEAD steps ahead, each once; reports of steps to come count when their step begins', async () => {
    const { clock, session, done, forced, report, sent, transport } = scoring(true);
    await clock.advance(0);
    // Step 0 and the two after it, at once.
    expect(sent()).toEqual([
      [0, 1, 2],
      [0, 1, 2],
      [0, 1, 2],
    ]);
    expect(transport.inputs.filter((x) => x.to === 'a').map((x) => x.m.tokens)).toEqual([[1], [7], [8]]);
    // a and b computed step 1 before step 0 was decided (held); a reports step 4 too, beyond MESH_AHEAD + 1: dropped.
    await report(1, 'a', 'b');
    await report(4, 'a');
    await report(0, 'a', 'b');
    // Step 0 decided, step 1 decided at once by the held reports: step 2 runs, steps 3 and 4 were sent.
    expect(session.inputsAhead).toBe(4);
    expect(sent()[0]).toEqual([0, 1, 2, 3, 4]);
    await report(2, 'a', 'b');
    await report(3, 'a', 'b');
    // Step 4: a's early report was dropped, b's alone is no majority.
    await report(4, 'b');
    expect(forced).toEqual([7, 8, 9, 10]);
    await report(4, 'a');
    expect(forced).toEqual([7, 8, 9, 10, 11]);
    await report(5, 'a', 'b');
    expect(await done).toEqual({ tokens: [5], finishReason: 'length' });
    // Each step's input sent once to each replica, none beyond the last forced one.
    expect(sent()).toEqual([
      [0, 1, 2, 3, 4, 5],
      [0, 1, 2, 3, 4, 5],
      [0, 1, 2, 3, 4, 5],
    ]);
    expect(clock.pending, 'timers left behind').toBe(0);
  });

  it('with the pipeline off (MESH_LOOP=off), sends each token when its step begins, and drops reports of steps to come', async () => {
    const { clock, done, forced, report, sent } = scoring(false);
    await clock.advance(0);
    expect(sent()[0]).toEqual([0]);
    await report(1, 'a', 'b');
    await report(0, 'a', 'b');
    expect(sent()[0]).toEqual([0, 1]);
    expect(forced).toEqual([7]);
    for (let step = 1; step <= 5; step++) await report(step, 'a', 'b');
    expect(forced).toEqual(FORCED);
    expect(await done).toEqual({ tokens: [5], finishReason: 'length' });
    expect(sent()[0]).toEqual([0, 1, 2, 3, 4, 5]);
  });
});

describe("a member's silence over sessions (what one leaves, the next goes on from)", () => {
  /** Member records' carries, kept as SessionRunner keeps them (Member.silence, merged by carriedOn). */
  function carryStore(): Pick<RetryHooks, 'silenceBefore' | 'silenceAfter'> & { silence: Map<string, SilenceCarry | null> } {
    const silence = new Map<string, SilenceCarry | null>();
    return {
      silence,
      silenceBefore: (id) => silence.get(id) ?? undefined,
      silenceAfter: (id, carry, before) => silence.set(id, carriedOn(silence.get(id) ?? null, before ?? null, carry)),
    };
  }

  /** A one-stage session of a, b and c on the store's carries, started (every replica joined). */
  async function carried(id: number, store: ReturnType<typeof carryStore>, steps: number) {
    const r = rig(id);
    Object.assign(r.hooks, { silenceBefore: store.silenceBefore, silenceAfter: store.silenceAfter });
    const { done } = await r.start(steps);
    return { ...r, done };
  }

  it('is not an honest replica 5x slower than its stage, heard in each session, struck where its sessions meet', async () => {
    // Steps of 1 s (limit 8 s); c computes each in 5 s and is heard at 5 s and 10 s of each 14-step session (2 of
    // 14, over 1 in SILENT_PACE). Alone, no session judges it (unheard 5 s at most); at the end it is computing its
    // third step, 4 s unheard. Its next session must not count those 4 s before its first report (5 s in): 9 s.
    const store = carryStore();
    const why: string[] = [];
    for (let k = 0; k < 4; k++) {
      const { clock, hooks, answerIn, done } = await carried(40 + k, store, 14);
      let cNext = 0;
      for (let step = 0; step < 14; step++) {
        await clock.advance(1_000);
        if (clock.now() % 5_000 === 0) await answerIn(5_000, cNext++, 'c');
        await answerIn(1_000, step, 'a', 'b');
      }
      expect(cNext).toBe(2);
      expect(await done).toEqual({ tokens: fives(14), finishReason: 'length' });
      why.push(...hooks.why);
    }
    expect(why).toEqual([]);
  });

  it('is a no-show when heard at the first step of every other session only (the tail a report leaves does not carry)', async () => {
    // Sessions of 10 steps of 400 ms (4 s, under the floor): c reports step 0 of one, then nothing in the next.
    // What a session where it was heard leaves of its time unheard is dropped, but its window carries: 1 step
    // reported in 20 is fewer than 1 in SILENT_PACE, judged behind once the window spans twice the limit.
    const store = carryStore();
    const why: string[] = [];
    for (let k = 0; k < 8 && why.length === 0; k++) {
      const { clock, hooks, answerIn, done } = await carried(60 + k, store, 10);
      for (let step = 0; step < 10; step++) {
        await clock.advance(400);
        await answerIn(400, step, ...(step === 0 && k % 2 === 0 ? ['a', 'b', 'c'] : ['a', 'b']));
      }
      expect(await done).toEqual({ tokens: fives(10), finishReason: 'length' });
      why.push(...hooks.why);
    }
    expect(why).toEqual(['c silent']);
  });

  // An honest replica 4x slower than its stage, in sessions shorter than its first step (3 steps of 250 ms: it
  // would report step 0 at 1 s), is never heard in any of them, as a silent member is: the coordinator cannot tell
  // them apart (the session closes before its reports come). A session that ends within SILENT_PACE times its
  // stage's pace of a member's watch adds nothing for a member it did not hear (SilentMembers.carry's grace).
  it('is not an honest replica 4x slower than its stage, in sessions each shorter than its first step', async () => {
    const store = carryStore();
    const why: string[] = [];
    for (let k = 0; k < 20; k++) {
      const { clock, hooks, answerIn, done } = await carried(50 + k, store, 3);
      for (let step = 0; step < 3; step++) {
        await clock.advance(250);
        await answerIn(250, step, 'a', 'b');
      }
      expect(await done).toEqual({ tokens: fives(3), finishReason: 'length' });
      why.push(...hooks.why);
    }
    expect(why).toEqual([]);
  });

  it('is not the slowest replica of its stage in sessions of one token (its report always comes after the close)', async () => {
    // 30 one-step sessions of 1 s (a slow model, requests of max_tokens 1): a and b decide each, and the session
    // closes before c, an honest replica a little slower, reports. Never heard, as a silent member is; over 10 s of
    // windows it reported none of 10 steps. Each session is within its grace: none adds anything.
    const store = carryStore();
    const why: string[] = [];
    for (let k = 0; k < 30; k++) {
      const { clock, hooks, answerIn, done } = await carried(200 + k, store, 1);
      await clock.advance(1_000);
      await answerIn(1_000, 0, 'a', 'b');
      expect(await done).toEqual({ tokens: fives(1), finishReason: 'length' });
      why.push(...hooks.why);
    }
    expect(why).toEqual([]);
  });

  it('is a no-show when silent in concurrent sessions, whichever session (one where it was heard) ends last', async () => {
    // c is in 8 sessions at once (a replica holds up to 16): silent in 7 of 4 s each (16 steps of 250 ms: 2 s past
    // the grace of 8 steps' pace), honest in the 8th, which ends last. Read one after another, its time unheard adds
    // up to the floor in its third round; a session that heard it must not wipe what the others, run beside it, left.
    const store = carryStore();
    const why: string[] = [];
    for (let round = 0; round < 4 && why.length === 0; round++) {
      const sessions = [];
      for (let k = 0; k < 8; k++) sessions.push(await carried(100 + 8 * round + k, store, 16));
      for (const [k, { clock, hooks, answerIn, done }] of sessions.entries()) {
        for (let step = 0; step < 16; step++) {
          await clock.advance(250);
          await answerIn(250, step, ...(k === 7 ? ['a', 'b', 'c'] : ['a', 'b']));
        }
        expect(await done).toEqual({ tokens: fives(16), finishReason: 'length' });
        why.push(...hooks.why);
      }
    }
    expect(why).toContain('c silent');
  });
});
