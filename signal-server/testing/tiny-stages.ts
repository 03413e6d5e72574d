// A real stage set for tests that drive a ReplicaCore by hand: the tiny-gqa-bias
// golden checkpoint in 3 stages, on this process's onnxruntime, built once per file.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import type { StageManifest } from '../../shared/model/manifest.js';
import { CachingExecutor } from '../../shared/model/pipeline.js';
import { type ActivationFrame, encodeFrame } from '../../shared/protocol/frames.js';
import type { StepDigest } from '../../shared/protocol/messages.js';
import { ReplicaCore } from '../../shared/swarm/replica-core.js';
import { goldenModelDir } from '../../testing/golden.js';
import { ensureStages, loadStageSet, partitionKey } from '../models/model-folder.js';
import { OrtExecutor } from '../reference/ort-executor.js';
import { createSignalServer, type SignalServer, type SignalServerOptions } from '../server.js';

export interface TinyStages {
  readonly manifest: StageManifest;
  readonly ort: OrtExecutor;
}

/** Builds the stages before the file's tests and releases them after; the getter throws before they are built. */
export function tinyStagesForFile(prefix: string): () => TinyStages {
  let cache = '';
  let stages: TinyStages | null = null;
  beforeAll(async () => {
    cache = mkdtempSync(join(tmpdir(), prefix));
    const { dir } = await ensureStages(goldenModelDir('tiny-gqa-bias'), { stages: 3 }, cache);
    const set = await loadStageSet(dir);
    stages = { manifest: set.manifest, ort: await OrtExecutor.create(set.stageBytes) };
  });
  afterAll(async () => {
    await stages?.ort.release();
    rmSync(cache, { recursive: true, force: true });
  });
  return () => {
    if (stages === null) throw new Error('the stages are built in beforeAll');
    return stages;
  };
}

/** Polls `check` every 5 ms until it holds, failing after `timeoutMs` with what was awaited. */
export async function until(check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  for (const end = Date.now() + timeoutMs; !check(); ) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A replica of `stage` on these stages that records what it reports (digests) and what it refuses; it sends nothing. */
export function recordingReplica(s: TinyStages, stage: number): { core: ReplicaCore; digests: StepDigest[]; rejected: string[] } {
  const digests: StepDigest[] = [];
  const rejected: string[] = [];
  const core = new ReplicaCore(s.manifest, stage, new CachingExecutor(s.manifest, s.ort), {
    frames: () => {},
    digest: (m) => digests.push(m),
    logits: () => {},
    failed: () => {},
    computed: () => {},
    rejected: (why) => rejected.push(why),
  });
  return { core, digests, rejected };
}

/**
 * Delivers to `core`, from peer `from`, stage `stage`'s output of `positions` positions (default one) for `step` (its
 * data a function of the step and `salt`: the same for every honest sender, another salt a liar's), as replica
 * `replica` in `era`.
 */
export function sendHidden(
  core: ReplicaCore,
  from: string,
  f: {
    sessionId: number;
    step: number;
    replica: number;
    era: number;
    hidden: number;
    stage?: number;
    salt?: number;
    positions?: number;
  },
): void {
  const positions = f.positions ?? 1;
  const frame: ActivationFrame = {
    sessionId: f.sessionId,
    step: f.step,
    stage: f.stage ?? 0,
    replica: f.replica,
    dims: [1, positions, f.hidden],
    data: Float32Array.from({ length: positions * f.hidden }, (_, i) => Math.sin(i + f.step + (f.salt ?? 0))),
    era: f.era,
  };
  for (const m of encodeFrame(frame)) core.frame(from, m);
}

/**
 * A real signalling server on 127.0.0.1:0 serving tiny-untied in 2 stages (no web root), started before the file's
 * tests and closed after; `options` adds to or overrides those. The getter throws before it is ready.
 */
export function tinyServerForFile(prefix: string, options: Partial<SignalServerOptions> = {}): () => SignalServer {
  let cache = '';
  let server: SignalServer | null = null;
  beforeAll(async () => {
    cache = mkdtempSync(join(tmpdir(), prefix));
    const { dir, manifest } = await ensureStages('fixtures/models/tiny-untied', { stages: 2 }, cache);
    server = createSignalServer({
      port: 0,
      host: '127.0.0.1',
      webRoot: null,
      models: [{ dir, manifest, key: partitionKey(2, { stages: 2 }) }],
      ...options,
    });
    await server.ready;
  });
  afterAll(async () => {
    await server?.close();
    rmSync(cache, { recursive: true, force: true });
  });
  return () => {
    if (server === null) throw new Error('the server starts in beforeAll');
    return server;
  };
}
