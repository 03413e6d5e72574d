// Red team (83cd8ca, SessionRepair.onFailure): a step:failed of a step ahead of the one in flight is held and counted
// when its step begins. A StepFailure has no `resets` (digests and logits do: StepVotes drops a report of an undone
// path by it), so a failure sent on the path a roll-back undid, arriving after the roll-back, is held and counted in
// the new era. A scored prompt on two stages, on a manual clock (as score-ahead-clock-attacks.test.ts).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StageManifest } from '../shared/model/manifest.js';
import { GREEDY } from '../shared/model/sampling.js';
import { fingerprint } from '../shared/vote/fingerprint.js';
import { goldenModelDir } from '../testing/golden.js';
import { LogitsForm } from '../testing/logits-form.js';
import { ManualClock } from '../testing/manual-clock.js';
import { Audit } from './coordinator/audit.js';
import { GenerationError, GenerationSession, type RetryHooks, type SessionTransport } from './coordinator/generation.js';
import { ensureStages } from './models/model-folder.js';

let cache: string;
let twoStages: StageManifest;
beforeAll(async () => {
  cache = mkdtempSync(join(tmpdir(), 'webswarm-rt-failed-'));
  twoStages = (await ensureStages(goldenModelDir('tiny-untied'), { stages: 2 }, cache)).manifest;
});
afterAll(() => rmSync(cache, { recursive: true, force: true }));

const FORCED = [7, 8, 9, 10, 11, 12, 13, 14];
const inputOf = (step: number) => (step === 0 ? [1] : [FORCED[step - 1] as number]);
const HIDDEN = fingerprint(new Float32Array([1, 2, 3, 4]));

function logitsFor(token: number, at = 10): Float32Array {
  const l = new Float32Array(twoStages.model.vocabSize);
  l[token] = at;
  return l;
}

function rig() {
  const clock = new ManualClock();
  // The form of logits the session asks for (a scored prompt's rows: scored forms); step s computes position s.
  const form = new LogitsForm();
  const transport: SessionTransport = { open: (_v, m) => form.opened(m), update: () => {}, input: () => {}, close: () => {} };
  const hooks: RetryHooks = {
    spares: (_s, exclude) => ['x', 'y'].filter((id) => !exclude.has(id)),
    link: () => {},
    noShow: () => {},
    serve: () => 'srv',
  };
  const session = new GenerationSession(
    78,
    [
      ['a', 'b', 'c'],
      ['d', 'e', 'f'],
    ],
    twoStages,
    transport,
    { joinMs: 60_000, stepMs: 30_000 },
    new Audit(),
    hooks,
    { redundancy: 3, established: () => false, trusted: (v: string) => v === 'srv' },
    clock,
    false,
    false,
    true,
  );
  const done = session.run([1], 1, GREEDY, () => {}, 0, FORCED);
  void done.catch(() => {});
  for (const v of ['a', 'b', 'c', 'd', 'e', 'f']) session.onJoined(v);
  const at = async (stage: number, step: number, resets: number, ...vs: string[]) => {
    const out = logitsFor(5);
    for (const v of vs) {
      if (stage === 0) session.onDigest(v, step, HIDDEN, 1, fingerprint(inputOf(step)), [], resets);
      else {
        session.onDigest(v, step, fingerprint(out), 1, HIDDEN, [], resets);
        session.onLogits(v, step, form.sent(out, step), resets);
      }
    }
    await clock.advance(0);
  };
  return { clock, session, at };
}

describe('step:failed of a step ahead, across a roll-back (red team)', () => {
  // FINDING (stale = true): the undone path's failure is held (step 2 > 1 in flight) and counted when the new era's
  // step 2 begins: a majority of stage 1 "had no majority of inputs" and the server takes stage 0 from x, y, c.
  for (const stale of [false, true])
    it(`stage 0 retried at step 1 (no majority: spares x, y, every stage rolled back)${stale ? '; then d and e’s ERR_NO_QUORUM for step 2 of the undone path arrives' : ' (control)'}: the new era's honest stage 0 is kept, not taken by the server`, async () => {
      const { clock, session, at } = rig();
      await clock.advance(0);
      await at(0, 0, 0, 'a', 'b', 'c');
      await at(1, 0, 0, 'd', 'e', 'f');
      expect((session as unknown as { currentStep: number }).currentStep).toBe(1);
      // Step 1: stage 0's three replicas disagree: retried on spares, every stage goes back to step 1 (era 1).
      for (const [i, v] of ['a', 'b', 'c'].entries())
        session.onDigest(v, 1, fingerprint(new Float32Array([i + 10])), 1, fingerprint(inputOf(1)));
      await clock.advance(0);
      const route0 = session.route[0]?.join(',') ?? '';
      expect(route0).toContain('x');
      for (const v of ['x', 'y']) session.onJoined(v);
      // Sent by d and e before their update came (they had run ahead to step 2 on stage 0's undone frames).
      if (stale) for (const v of ['d', 'e']) session.onFailure(v, 2, 'ERR_NO_QUORUM', 'stage 1: the inputs from stage 0 do not agree');
      await clock.advance(0);
      // The new era: every replica honest and agreeing on steps 1 and 2.
      const stage0 = session.route[0] ?? [];
      const resets = (v: string) => (['x', 'y'].includes(v) ? 0 : 1);
      for (const v of stage0) await at(0, 1, resets(v), v);
      for (const v of ['d', 'e', 'f']) await at(1, 1, 1, v);
      expect((session as unknown as { currentStep: number }).currentStep).toBe(2);
      await clock.advance(1_000);
      expect(session.route[0]?.join(','), 'stage 0 after step 2 began').toBe(route0);
      session.abort(new GenerationError('ERR_CANCELLED', 'done'));
      await clock.advance(0);
    });

  // FINDING: the same with ERR_COMPUTE (d and e's compute of the undone step 2 failed): counted as their answers to
  // the new era's step 2, before their honest reports of it; stage 1 is retried on spares (or served).
  for (const stale of [false, true])
    it(`stage 0 retried at step 1${stale ? ', then d and e’s ERR_COMPUTE for step 2 of the undone path' : ' (control)'}: honest d, e, f kept, step 2 decided`, async () => {
      const { clock, session, at } = rig();
      await clock.advance(0);
      await at(0, 0, 0, 'a', 'b', 'c');
      await at(1, 0, 0, 'd', 'e', 'f');
      for (const [i, v] of ['a', 'b', 'c'].entries())
        session.onDigest(v, 1, fingerprint(new Float32Array([i + 10])), 1, fingerprint(inputOf(1)));
      await clock.advance(0);
      for (const v of ['x', 'y']) session.onJoined(v);
      if (stale) for (const v of ['d', 'e']) session.onFailure(v, 2, 'ERR_COMPUTE', 'out of memory');
      await clock.advance(0);
      const stage0 = session.route[0] ?? [];
      const resets = (v: string) => (['x', 'y'].includes(v) ? 0 : 1);
      for (const v of stage0) await at(0, 1, resets(v), v);
      for (const v of ['d', 'e', 'f']) await at(1, 1, 1, v);
      for (const v of stage0) await at(0, 2, resets(v), v);
      for (const v of ['d', 'e', 'f']) await at(1, 2, 1, v);
      await clock.advance(1_000);
      expect(session.route[1]?.join(','), 'stage 1').toBe('d,e,f');
      expect((session as unknown as { currentStep: number }).currentStep).toBe(3);
      session.abort(new GenerationError('ERR_CANCELLED', 'done'));
      await clock.advance(0);
    });
  it('a member (f, stage 1) floods step:failed for every step ahead, far and near, each kind, before each step: held within the window only, its own place; the honest path finishes on the same route', async () => {
    const { clock, session, at } = rig();
    await clock.advance(0);
    const early = () => (session as unknown as { early: Map<number, Map<string, unknown>> }).early;
    let most = 0;
    for (let step = 0; step <= FORCED.length; step++) {
      for (let k = step + 1; k < step + 2_000; k++)
        for (const code of ['ERR_NO_QUORUM', 'ERR_COMPUTE', 'ERR_NOT_LINKED'] as const) session.onFailure('f', k, code, 'flood');
      most = Math.max(
        most,
        [...early().values()].reduce((a, m) => a + m.size, 0),
      );
      await at(0, step, 0, 'a', 'b', 'c');
      await at(1, step, 0, 'd', 'e', 'f');
    }
    // One held failure of f per step within MESH_AHEAD + 1 of the step in flight.
    expect(most).toBeLessThanOrEqual(4);
    expect(session.route.map((ids) => ids.join(','))).toEqual(['a,b,c', 'd,e,f']);
    expect(clock.pending, 'timers left behind').toBe(0);
  });
});
