// Frames that overtake the route update naming or rolling back their sender
// wait as strays (a bounded few per session) until the update comes. A real
// replica (ReplicaCore) of a real stage on onnxruntime, fed real frames
// (encodeFrame) by its previous stage's replicas, one of them hostile: it
// floods frames of a later era so as to push the honest senders' strays out,
// and the step would wait for frames that are never sent again.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StageManifest } from '../shared/model/manifest.js';
import { CachingExecutor } from '../shared/model/pipeline.js';
import { type ActivationFrame, encodeFrame } from '../shared/protocol/frames.js';
import type { StepDigest } from '../shared/protocol/messages.js';
import { ReplicaCore } from '../shared/swarm/replica-core.js';
import { fingerprint } from '../shared/vote/fingerprint.js';
import { goldenModelDir } from '../testing/golden.js';
import { ensureStages, loadStageSet } from './models/model-folder.js';
import { OrtExecutor } from './reference/ort-executor.js';

const SESSION = 9;
const PREV = ['A', 'B', 'H'];

let cache: string;
let manifest: StageManifest;
let ort: OrtExecutor;

beforeAll(async () => {
  cache = mkdtempSync(join(tmpdir(), 'webswarm-strays-'));
  const { dir } = await ensureStages(goldenModelDir('tiny-gqa-bias'), { stages: 3 }, cache);
  const set = await loadStageSet(dir);
  manifest = set.manifest;
  ort = await OrtExecutor.create(set.stageBytes);
});

afterAll(async () => {
  await ort.release();
  rmSync(cache, { recursive: true, force: true });
});

async function until(check: () => boolean, what: string): Promise<void> {
  for (const end = Date.now() + 10_000; !check(); ) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('strays of a later era', () => {
  it("a sender flooding frames of a later era cannot push the honest senders' strays out before the update comes", async () => {
    const digests: StepDigest[] = [];
    const core = new ReplicaCore(manifest, 1, new CachingExecutor(manifest, ort), {
      frames: () => {},
      digest: (m) => digests.push(m),
      logits: () => {},
      failed: () => {},
      computed: () => {},
      rejected: () => {},
    });
    core.open({ sessionId: SESSION, stage: 1, replica: 0, prev: PREV, next: ['n0'], replayTo: 0 });
    const hidden = manifest.model.hiddenSize;
    const positions = 3;
    const data = Float32Array.from({ length: positions * hidden }, (_, i) => Math.sin(i));
    const frame = (replica: number, era: number, step = 0, values = data): ActivationFrame => ({
      sessionId: SESSION,
      step,
      stage: 0,
      replica,
      dims: [1, values.length / hidden, hidden],
      data: values,
      era,
    });
    const send = (from: string, f: ActivationFrame) => {
      for (const m of encodeFrame(f)) core.frame(from, m);
    };
    // The coordinator rolled the pipeline back (era 1): A and B recomputed step 0, and their frames overtake the update.
    send('A', frame(0, 1));
    send('B', frame(1, 1));
    // H, hostile, floods frames of the new era for steps to come.
    const junk = new Float32Array(hidden);
    for (let i = 0; i < 64; i++) send('H', frame(2, 1, 1 + (i % 8), junk));
    await new Promise((r) => setTimeout(r, 50));
    expect(digests).toEqual([]);
    // The update comes: A's and B's frames, kept, are a majority.
    core.update({ sessionId: SESSION, prev: PREV, next: ['n0'], resendTo: [], era: 1 });
    await until(() => digests.length === 1, 'step 0 on the honest strays');
    expect(digests[0]).toMatchObject({ step: 0, input: fingerprint(data) });
    core.close(SESSION);
  });
});
