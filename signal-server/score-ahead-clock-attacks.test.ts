// Red team: hostile reports against a scored prompt whose tokens go to stage 0 ahead (283ae5c), on a manual
// clock: the session's own inbound calls (onDigest, onLogits), as a hostile volunteer's socket delivers them.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StageManifest } from '../shared/model/manifest.js';
import { GREEDY } from '../shared/model/sampling.js';
import type { StepInput } from '../shared/protocol/messages.js';
import { MESH_AHEAD } from '../shared/swarm/mesh-loop.js';
import { fingerprint } from '../shared/vote/fingerprint.js';
import { goldenModelDir } from '../testing/golden.js';
import { LogitsForm } from '../testing/logits-form.js';
import { ManualClock } from '../testing/manual-clock.js';
import { Audit } from './coordinator/audit.js';
import { GenerationError, GenerationSession, type RetryHooks, type SessionTransport } from './coordinator/generation.js';
import { ensureStages } from './models/model-folder.js';

let cache: string;
let manifest: StageManifest;
let twoStages: StageManifest;
beforeAll(async () => {
  cache = mkdtempSync(join(tmpdir(), 'webswarm-rt-clock-'));
  manifest = (await ensureStages(goldenModelDir('tiny-untied'), { stages: 1 }, cache)).manifest;
  twoStages = (await ensureStages(goldenModelDir('tiny-untied'), { stages: 2 }, cache)).manifest;
});
afterAll(() => rmSync(cache, { recursive: true, force: true }));

const FORCED = [7, 8, 9, 10, 11, 12, 13, 14];
const inputOf = (step: number) => (step === 0 ? [1] : [FORCED[step - 1] as number]);

function logitsFor(token: number, at = 10): Float32Array {
  const l = new Float32Array(manifest.model.vocabSize);
  l[token] = at;
  return l;
}

function scoring(o: { scoreAhead?: boolean; spares?: string[]; twoStages?: boolean; serve?: string } = {}) {
  const clock = new ManualClock();
  const inputs: { to: string; m: StepInput }[] = [];
  // The form of logits the session asks for (a scored prompt's rows: scored forms); step s computes position s.
  const form = new LogitsForm();
  const transport: SessionTransport = {
    open: (_v, m) => form.opened(m),
    update: () => {},
    input: (v, m) => inputs.push({ to: v, m }),
    close: () => {},
  };
  const noShows: string[] = [];
  const hooks: RetryHooks = {
    spares: (_s, exclude) => (o.spares ?? []).filter((id) => !exclude.has(id)),
    link: () => {},
    noShow: (v, w = 'absent') => noShows.push(`${v} ${w}`),
    ...(o.serve === undefined ? {} : { serve: () => o.serve as string }),
  };
  const route =
    o.twoStages === true
      ? [
          ['a', 'b', 'c'],
          ['d', 'e', 'f'],
        ]
      : [['a', 'b', 'c']];
  const session = new GenerationSession(
    77,
    route,
    o.twoStages === true ? twoStages : manifest,
    transport,
    { joinMs: 60_000, stepMs: 30_000 },
    new Audit(),
    hooks,
    { redundancy: 3, established: () => false, trusted: (v: string) => v === o.serve },
    clock,
    false,
    false,
    o.scoreAhead ?? true,
  );
  const forced: { token: number; top: number }[] = [];
  const done = session.run(
    [1],
    1,
    GREEDY,
    (t, rec) => {
      if (rec.forced === true) forced.push({ token: t, top: rec.logits.indexOf(Math.max(...rec.logits)) });
    },
    0,
    FORCED,
  );
  for (const v of route.flat()) session.onJoined(v);
  /** Honest reports of `step` (logits peaked on token 5). */
  const report = async (step: number, ...vs: string[]) => {
    const out = logitsFor(5);
    for (const v of vs) {
      session.onDigest(v, step, fingerprint(out), 1, fingerprint(inputOf(step)));
      session.onLogits(v, step, form.sent(out, step));
    }
    await clock.advance(0);
  };
  return { clock, session, done, forced, report, inputs, noShows, form };
}

describe('hostile reports of steps ahead in a scored prompt', () => {
  it("a member's reports of steps it was never sent, far ahead, are bounded: the session keeps nothing for them (memory, stepsAhead)", async () => {
    const { clock, session, done, report } = scoring();
    await clock.advance(0);
    // c floods digests for 5 000 distinct steps far beyond anything sent (the socket's event budget allows 200 a second).
    for (let s = 10; s < 5_010; s++) session.onDigest('c', s, [1, 2, 3], 1, [4]);
    for (let step = 0; step <= FORCED.length; step++) await report(step, 'a', 'b');
    await done;
    // Every step of this session is 9 long: nothing beyond it can have been computed ahead.
    expect(session.stepsAhead).toBeLessThanOrEqual(FORCED.length + 1);
  });

  it("a member's forged reports of the steps just ahead (within MESH_AHEAD + 1, some never sent) are held, then outvoted: every position's logits the honest majority's", async () => {
    const { clock, session, done, forced, report, form } = scoring();
    await clock.advance(0);
    const forged = logitsFor(FORCED[0] as number, 50);
    for (let round = 0; round <= FORCED.length; round++) {
      // Before step `round` is decided, c reports each of the next MESH_AHEAD + 1 steps with logits spiked on the
      // prompt's own next token (a claim of certainty), twice over (the latest kept).
      for (let s = round + 1; s <= round + MESH_AHEAD + 1; s++) {
        const spike = logitsFor(FORCED[s] ?? 0, 50);
        for (let k = 0; k < 2; k++) {
          session.onDigest('c', s, fingerprint(spike), 0, fingerprint(inputOf(s)));
          session.onLogits('c', s, form.sent(k === 0 ? forged : spike, s));
        }
      }
      await report(round, 'a', 'b');
    }
    expect(await done).toEqual({ tokens: [5], finishReason: 'length' });
    expect(forced.map((f) => f.token)).toEqual(FORCED);
    expect(forced.every((f) => f.top === 5)).toBe(true);
    expect(clock.pending, 'timers left behind').toBe(0);
  });

  it('reports held for steps ahead do not outlive the session: a member that reports ahead of the last step leaves no timer, and the honest path finishes', async () => {
    const { clock, session, done, report } = scoring();
    await clock.advance(0);
    for (let step = 0; step <= FORCED.length; step++) {
      await report(step + 1, 'a', 'b');
      await report(step, 'a', 'b');
    }
    expect(await done).toEqual({ tokens: [5], finishReason: 'length' });
    // Reports of a step past the end (the session is over) change nothing.
    session.onDigest('a', FORCED.length + 1, [1], 1, [1]);
    await clock.advance(60_000);
    expect(clock.pending).toBe(0);
  });

  it('an honest replica that reports every step ahead (held, then counted) is heard: not judged silent over a long prompt', async () => {
    const { clock, session, done, report, noShows } = scoring();
    await clock.advance(0);
    // c is fast: it reports each step before the step begins here (held), a and b when it is in flight, 6 s a step.
    await report(0, 'c');
    await report(1, 'c');
    for (let step = 0; step <= FORCED.length; step++) {
      if (step + 2 <= FORCED.length) await report(step + 2, 'c');
      await clock.advance(6_000);
      await report(step, 'a', 'b');
    }
    expect(await done).toEqual({ tokens: [5], finishReason: 'length' });
    expect(noShows).toEqual([]);
    void session;
  });

  it('two replicas whose compute fails on a step sent ahead (step:failed before the step began here): the step is retried on spares at once, as step by step, not left to time out', async () => {
    const outcome = async (scoreAhead: boolean) => {
      const { clock, session, done, report, inputs } = scoring({ scoreAhead, spares: ['x', 'y'] });
      const settled = done.then(
        () => 'finished',
        (e: { code?: string }) => e.code ?? 'error',
      );
      await clock.advance(0);
      // Pipelined: b and c got step 1's token with step 0's, and their compute of it fails while step 0 is in flight.
      if (scoreAhead) for (const v of ['b', 'c']) session.onFailure(v, 1, 'ERR_COMPUTE', 'out of memory');
      await report(0, 'a', 'b', 'c');
      // Step by step: step 1's token comes now, and their compute of it fails while step 1 is in flight.
      await report(1, 'a');
      expect((session as unknown as { currentStep: number }).currentStep).toBe(1);
      if (!scoreAhead) for (const v of ['b', 'c']) session.onFailure(v, 1, 'ERR_COMPUTE', 'out of memory');
      await clock.advance(1_000);
      const retried = inputs.some((x) => x.to === 'x');
      // Whatever happens, the session ends within the step timeout.
      await clock.advance(30_000);
      return { retried, settled: await settled };
    };
    const stepByStep = await outcome(false);
    expect(stepByStep.retried).toBe(true);
    const pipelined = await outcome(true);
    expect(pipelined, 'pipelined as step by step').toEqual(stepByStep);
  });

  it('a majority of stage 1 says its inputs of a step sent ahead had no majority (step:failed ERR_NO_QUORUM before the step began here): the server takes stage 0 at once, as step by step', async () => {
    const HIDDEN = fingerprint(new Float32Array([1, 2, 3, 4]));
    const outcome = async (scoreAhead: boolean) => {
      const { clock, session, done, form } = scoring({ scoreAhead, twoStages: true, serve: 'srv' });
      void done.catch(() => {});
      const at = async (stage: number, step: number, ...vs: string[]) => {
        const out = logitsFor(5);
        for (const v of vs) {
          if (stage === 0) session.onDigest(v, step, HIDDEN, 1, fingerprint(inputOf(step)));
          else {
            session.onDigest(v, step, fingerprint(out), 1, HIDDEN);
            session.onLogits(v, step, form.sent(out, step));
          }
        }
        await clock.advance(0);
      };
      const noQuorum = () => {
        for (const v of ['d', 'e']) session.onFailure(v, 1, 'ERR_NO_QUORUM', 'stage 1: the inputs from stage 0 do not agree');
      };
      await clock.advance(0);
      await at(0, 0, 'a', 'b', 'c');
      await at(0, 1, 'a', 'b', 'c');
      if (scoreAhead) noQuorum();
      await at(1, 0, 'd', 'e', 'f');
      expect((session as unknown as { currentStep: number }).currentStep).toBe(1);
      if (!scoreAhead) noQuorum();
      await clock.advance(1_000);
      return session.route.map((ids) => ids.join(','));
    };
    const stepByStep = await outcome(false);
    expect(stepByStep).toEqual(['srv', 'd,e,f']);
    expect(await outcome(true), 'pipelined as step by step').toEqual(stepByStep);
  });

  it('the client cancels mid-prompt while reports of steps ahead are held and a settle timer runs: the session ends at once, every replica is told, no timer is left', async () => {
    const { clock, session, done, report, form } = scoring();
    const settled = done.then(
      () => 'finished',
      (e: { code?: string }) => e.code ?? 'error',
    );
    await clock.advance(0);
    await report(0, 'a', 'b', 'c');
    await report(2, 'a', 'b');
    await report(3, 'a');
    // Step 1: a and b agree within tolerance only (a settle timer), c not yet.
    const near = logitsFor(5);
    const nearer = logitsFor(5);
    nearer[0] = 1e-6;
    session.onDigest('a', 1, fingerprint(near), 1, fingerprint(inputOf(1)));
    session.onLogits('a', 1, form.sent(near, 1));
    session.onDigest('b', 1, fingerprint(nearer), 1, fingerprint(inputOf(1)));
    session.onLogits('b', 1, form.sent(nearer, 1));
    await clock.advance(0);
    session.abort(new GenerationError('ERR_CANCELLED', 'the request was cancelled by its client'));
    await clock.advance(0);
    expect(await settled).toBe('ERR_CANCELLED');
    expect(clock.pending, 'timers left behind').toBe(0);
  });
});
