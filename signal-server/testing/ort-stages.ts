// A model of the fixtures cut into stages in a temporary stage cache, with
// onnxruntime sessions of them in Node: for tests that run a real replica
// (ReplicaCore) at its boundary without a server.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { StageManifest } from '../../shared/model/manifest.js';
import { goldenModelDir } from '../../testing/golden.js';
import { ensureStages, loadStageSet } from '../models/model-folder.js';
import { OrtExecutor } from '../reference/ort-executor.js';

export interface OrtStages {
  readonly manifest: StageManifest;
  readonly ort: OrtExecutor;
  /** Releases the sessions and removes the stage cache. */
  close(): Promise<void>;
}

export async function ortStages(model: string, stages: number): Promise<OrtStages> {
  const cache = mkdtempSync(join(tmpdir(), 'webswarm-ort-stages-'));
  try {
    const { dir } = await ensureStages(goldenModelDir(model), { stages }, cache);
    const set = await loadStageSet(dir);
    const ort = await OrtExecutor.create(set.stageBytes);
    return {
      manifest: set.manifest,
      ort,
      async close() {
        await ort.release();
        rmSync(cache, { recursive: true, force: true });
      },
    };
  } catch (e) {
    rmSync(cache, { recursive: true, force: true });
    throw e;
  }
}
