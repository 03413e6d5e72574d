/**
 * A webswarm server on this machine for tools, benchmarks and tests: the
 * built web app (dist/) and the stages of the given model folders (built into
 * `cacheRoot`, or reused from it), on port 0 unless told otherwise.
 */
import type { WeightPrecision } from '../shared/model/quantize.js';
import type { GraphForm } from '../shared/model/stage-graph-fused.js';
import { ensureStages, stageDirName } from '../signal-server/models/model-folder.js';
import { createSignalServer, type ServedStages, type SignalServer, type SignalServerOptions } from '../signal-server/server.js';

export async function startLocalServer(
  models: readonly { dir: string; stages: number; weights?: WeightPrecision; graph?: GraphForm; weightsUrl?: string }[],
  cacheRoot: string,
  options: Partial<Omit<SignalServerOptions, 'models'>> = {},
): Promise<SignalServer> {
  const served: ServedStages[] = [];
  for (const m of models) {
    const partition = { stages: m.stages };
    const choice = { weights: m.weights ?? 'f32', graph: m.graph ?? 'plain' } as const;
    const { dir, manifest } = await ensureStages(m.dir, partition, cacheRoot, choice);
    served.push({
      dir,
      manifest,
      key: stageDirName(manifest.model.numLayers, partition, choice),
      modelDir: m.dir,
      ...(m.weightsUrl === undefined ? {} : { weightsUrl: m.weightsUrl }),
    });
  }
  const server = createSignalServer({ port: 0, host: '127.0.0.1', webRoot: 'dist', ...options, models: served });
  await server.ready;
  return server;
}
