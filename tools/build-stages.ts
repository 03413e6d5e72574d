/** npm run build-stages -- --model models/<id> (--stages N | --layers 0-2,2-4,...) [--weights f32|f16|q8|q4] [--graph plain|fused] [--context N (default 8192; 0: the model's)] [--out DIR] */
import { join } from 'node:path';
import { GRAPH_FORMS, type GraphForm } from '../shared/model/stage-graph-fused.js';
import { DEFAULT_CONTEXT } from '../signal-server/defaults.js';
import { buildStagesToDir, builtChoice, MIN_CONTEXT, readModelFolder, stageDirName } from '../signal-server/models/model-folder.js';
import { cliArgs, modelDir, partitionFrom, runCli, STAGE_CACHE, weightsFrom } from './cli-args.js';

const USAGE =
  "usage: npm run build-stages -- --model models/<id> [--stages N | --layers 0-2,2-4] [--weights f32|f16|q8|q4] [--graph plain|fused] [--context N (default 8192; 0: the model's)] [--out DIR]";

runCli(async () => {
  const v = cliArgs(
    {
      model: { type: 'string', default: 'austen-2m' },
      stages: { type: 'string' },
      layers: { type: 'string' },
      weights: { type: 'string' },
      graph: { type: 'string', default: 'plain' },
      context: { type: 'string' },
      out: { type: 'string' },
    },
    USAGE,
  );
  const graph = v.graph as string;
  if (!(GRAPH_FORMS as readonly string[]).includes(graph))
    throw new Error(`--graph must be one of ${GRAPH_FORMS.join(', ')}, got "${graph}"`);
  const t0 = performance.now();
  const model = readModelFolder(modelDir(v.model as string));
  const partition = partitionFrom({ stages: v.stages as string | undefined, layers: v.layers as string | undefined });
  const weights = weightsFrom(v.weights as string | undefined);
  const contextArg = v.context as string | undefined;
  // The server's default (CONTEXT), so that what this builds is the folder npm start looks for.
  const context = contextArg === undefined ? DEFAULT_CONTEXT : Number(contextArg);
  if (
    contextArg !== undefined &&
    (!/^\d+$/.test(contextArg.trim()) || !Number.isSafeInteger(context) || (context !== 0 && (context as number) < MIN_CONTEXT))
  )
    throw new Error(`--context must be 0 (the model's own) or a count of positions of at least ${MIN_CONTEXT}, got "${contextArg}"`);
  // The server's CONTEXT: fewer positions than the model's, or the model's (0, or as many or more).
  const choice = builtChoice(
    model.config,
    { weights, graph: graph as GraphForm, ...(context === 0 ? {} : { context }) },
    join(model.dir, 'config.json'),
  );
  const out = (v.out as string | undefined) ?? join(STAGE_CACHE, model.modelId, stageDirName(model.config.numLayers, partition, choice));
  const manifest = await buildStagesToDir(model, partition, out, choice);
  const ms = performance.now() - t0;
  for (const s of manifest.stages) {
    process.stdout.write(
      `${s.file}  layers [${s.layers.start}, ${s.layers.end})  ${(s.sizeBytes / 1e6).toFixed(2)} MB  sha256 ${s.sha256.slice(0, 16)}…\n`,
    );
  }
  process.stdout.write(`built ${manifest.stages.length} ${weights} ${graph} stages of ${model.modelId} (${manifest.model.maxPositions} positions) into ${out} in ${ms.toFixed(0)} ms
`);
});
