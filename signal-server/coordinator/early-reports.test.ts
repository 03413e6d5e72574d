// The mesh loop's early reports on a manual clock: with the loop, replicas
// report steps before the coordinator begins them, and it holds those reports
// until then. A hostile route member that floods reports of the steps to come
// (each a real onDigest, as its step:digest events arrive) must not crowd out
// the honest replicas' reports, which are sent once and never again: the step
// would wait for them until it timed out, and the honest ones be blamed.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StageManifest } from '../../shared/model/manifest.js';
import { GREEDY } from '../../shared/model/sampling.js';
import type { SessionOpen, StepInput } from '../../shared/protocol/messages.js';
import { MESH_AHEAD } from '../../shared/swarm/mesh-loop.js';
import { fingerprint } from '../../shared/vote/fingerprint.js';
import { goldenModelDir } from '../../testing/golden.js';
import { LogitsForm } from '../../testing/logits-form.js';
import { ManualClock } from '../../testing/manual-clock.js';
import { ensureStages } from '../models/model-folder.js';
import { Audit } from './audit.js';
import { GenerationSession, type SessionTransport } from './generation.js';

const TIMEOUTS = { joinMs: 60_000, stepMs: 30_000 };
const PROMPT = [1, 2, 3];

let cache: string;
let manifest: StageManifest;
beforeAll(async () => {
  cache = mkdtempSync(join(tmpdir(), 'webswarm-early-'));
  // One stage: its replicas are stage 0 and the last stage, and send the logits.
  manifest = (await ensureStages(goldenModelDir('tiny-untied'), { stages: 1 }, cache)).manifest;
});
afterAll(() => rmSync(cache, { recursive: true, force: true }));
/** The form of logits the session asks its replicas for (it sends this test's session:open). */
const form = new LogitsForm();

function transport(): SessionTransport & { inputs: StepInput[] } {
  const inputs: StepInput[] = [];
  return {
    inputs,
    open: (_v: string, m: SessionOpen) => form.opened(m),
    update: () => {},
    input: (_v, m) => inputs.push(m),
    close: () => {},
  };
}

/** Logits over the model's vocabulary whose argmax is `token`. */
function logitsFor(token: number): Float32Array {
  const l = new Float32Array(manifest.model.vocabSize);
  l[token] = 10;
  return l;
}

describe('early reports of the mesh loop', () => {
  it("a replica flooding reports of the steps to come holds only its own place: the honest replicas' early reports decide the step", async () => {
    const clock = new ManualClock();
    const session = new GenerationSession(
      1,
      [['a', 'b', 'c']],
      manifest,
      transport(),
      TIMEOUTS,
      new Audit(),
      null,
      { redundancy: 3, established: () => false },
      clock,
      true,
    );
    const outcome = session
      .run(PROMPT, 2, GREEDY, () => {})
      .then(
        (r) => r,
        (e: unknown) => e,
      );
    for (const v of ['a', 'b', 'c']) session.onJoined(v);
    await clock.advance(0);
    // c, hostile, floods made-up reports of every step within the loop's reach before anyone reports them.
    for (let step = 1; step <= 1 + MESH_AHEAD; step++) for (let i = 0; i < 50; i++) session.onDigest('c', step, [i, i, i], 0, [i]);
    // a and b, running ahead on the mesh token (5), report step 1 while step 0 is still being decided.
    for (const v of ['a', 'b']) {
      session.onDigest(v, 1, fingerprint(logitsFor(6)), 1, fingerprint([5]));
      session.onLogits(v, 1, form.sent(logitsFor(6)));
    }
    // Then step 0 from a and b: decided, and step 1 begins with their held reports.
    for (const v of ['a', 'b']) {
      session.onDigest(v, 0, fingerprint(logitsFor(5)), 1, fingerprint(PROMPT));
      session.onLogits(v, 0, form.sent(logitsFor(5)));
    }
    await clock.advance(1);
    // Without their held reports, step 1 would wait for them to its timeout.
    await clock.advance(TIMEOUTS.stepMs);
    expect(await outcome).toEqual({ tokens: [5, 6], finishReason: 'length' });
    expect(clock.pending, 'timers left behind').toBe(0);
  });
});
