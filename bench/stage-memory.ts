/**
 * Child process of bench/precision.ts: prints how many bytes of resident
 * memory one stage takes in onnxruntime-web (WASM, in Node): the growth of RSS
 * from after the runtime's start to after the stage's session is created and
 * has run one decoding step.
 *   node --import tsx bench/stage-memory.ts STAGE_DIR STAGE_INDEX
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseManifest } from '../shared/model/manifest.js';
import { GraphBuilder } from '../shared/model/onnx-graph.js';
import type { Feeds } from '../shared/model/pipeline.js';
import { STAGE_IO } from '../shared/model/stage-graph.js';
import { OrtExecutor } from '../signal-server/reference/ort-executor.js';

const [dir = '', stageArg = '0'] = process.argv.slice(2);
const manifest = parseManifest('manifest.json', JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')));
const entry = manifest.stages[Number(stageArg)];
if (entry === undefined) throw new Error(`no stage ${stageArg}`);
const bytes = readFileSync(join(dir, entry.file));

// Start the runtime (its WebAssembly module and heap) with a graph of one node, then measure from there.
const g = new GraphBuilder();
g.op('Identity', ['x'], {}, 'y');
const tiny = await OrtExecutor.create([
  g.toBytes('tiny', [{ name: 'x', dtype: 'float32', shape: [1] }], [{ name: 'y', dtype: 'float32', shape: [1] }], ''),
]);
await tiny.run(0, { x: { dtype: 'float32', dims: [1], data: new Float32Array(1) } });
// Run with --expose-gc: collected garbage is not counted either side.
const collect = (globalThis as { gc?: () => void }).gc ?? (() => {});
collect();
const before = process.memoryUsage().rss;

const cfg = manifest.model;
const feeds: Feeds = {};
for (const input of entry.inputs) {
  // The last stage's logits_from: the runtime adapter feeds the last position's.
  if (input.name === STAGE_IO.logitsFrom) continue;
  if (input.dtype === 'int64') feeds[input.name] = { dtype: 'int64', dims: [1, 1], data: new BigInt64Array(1) };
  else if (input.name.startsWith('past.'))
    feeds[input.name] = { dtype: 'float32', dims: [1, cfg.numKvHeads, 0, cfg.headDim], data: new Float32Array(0) };
  else feeds[input.name] = { dtype: 'float32', dims: [1, 1, cfg.hiddenSize], data: new Float32Array(cfg.hiddenSize) };
}
const stage = await OrtExecutor.create([bytes]);
await stage.run(0, feeds);
collect();
process.stdout.write(`${process.memoryUsage().rss - before}\n`);
