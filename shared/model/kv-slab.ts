// Decode steps of the fused graph with the KV cache kept in buffers of our own
// ("slabs"): one per layer key and value, batch-major [rows, kvHeads,
// capacity, headDim], with room for the positions to come. A step feeds the
// slabs as past.* (no per-row gather while the same rows step together, or a
// row steps alone), fetches only each row's new key and value (the graph's
// new.* outputs, [B, kvHeads, 1, headDim]) instead of present.*, and writes
// them into the slab at the row's length. Each row's cache is then its block
// of the slab, as a view.
//
// Why: onnxruntime-web copies every input into its WebAssembly memory and
// every fetched output out of it. present.* is as long as the buffer fed
// (GroupQueryAttention returns max(buffer, total) positions), so fetching it
// copied the whole cache out again each step, and a new array to hold it
// (bench/batching.ts, docs/stages.md "Batching across sessions").
//
// Safety: GroupQueryAttention reads only a row's first seqlens_k + 1
// positions of its own row, so what lies past a row's length (zeros, or its
// own stale tail after a roll-back) is never read, and no row reads another
// row's block. A slab is gathered afresh (each row's own positions, the rest
// zeroed) whenever the rows differ from the slab's, in number or order, or
// one needs more room: a closed session's block is never handed to another.
// Positions are written only after the call succeeded, each in its own row.
import type { ModelConfig } from './config.js';
import type { StageEntry } from './manifest.js';
import type { Feeds, Float32Tensor, HostArray, KvFeeds } from './pipeline.js';
import { STAGE_IO, stageInputName, stageOutputName } from './stage-graph.js';
import { FUSED_IO } from './stage-graph-fused.js';
import { type BatchRow, float32, fusedPositions, padRow, sameBatch, stackInputs } from './step-batch.js';

/** The capacity a slab is gathered with for `need` positions: some room to grow, so that most steps need no gather. */
export function slabCapacity(need: number): number {
  return Math.ceil((need + Math.max(16, need >> 3)) / 16) * 16;
}

/** One layer tensor's slab as fed: its data, rows and capacity. */
interface Slab {
  readonly data: Float32Array;
  readonly capacity: number;
}

/**
 * The outputs a slab step fetches: the main output and every layer's new key
 * and value; a stage built before the graph had new.* (a cached build), its
 * present.* instead, from which scatterSlabs takes the new positions.
 */
export function slabFetches(entry: Pick<StageEntry, 'index' | 'layers' | 'outputs'>, numStages: number): string[] {
  const { layers } = entry;
  const names = [stageOutputName(entry.index, numStages)];
  const hasNew = entry.outputs.some((o) => o.name === FUSED_IO.newKey(layers.start));
  for (let l = layers.start; l < layers.end; l++)
    names.push(...(hasNew ? [FUSED_IO.newKey(l), FUSED_IO.newValue(l)] : [STAGE_IO.presentKey(l), STAGE_IO.presentValue(l)]));
  return names;
}

/** Where a row's new key or value is in a step's outputs: new.* ([B, heads, 1, hd]), else present.* at the row's length. */
function newPositions(outputs: KvFeeds, fresh: string, present: string, b: number, heads: number, hd: number, lengths: readonly number[]) {
  const n = outputs[fresh];
  if (n !== undefined) {
    const t = float32(n, fresh);
    if (t.dims.join() !== [b, heads, 1, hd].join()) throw new Error(`${fresh} of a batch of ${b} has shape [${t.dims.join(', ')}]`);
    return { data: t.data, at: (i: number, h: number) => (i * heads + h) * hd };
  }
  const p = float32(outputs[present], present);
  const total = p.dims[2] as number;
  if (p.dims[0] !== b || p.dims[1] !== heads || p.dims[3] !== hd || total <= Math.max(...lengths))
    throw new Error(`${present} of a batch of ${b} has shape [${p.dims.join(', ')}]`);
  return { data: p.data, at: (i: number, h: number) => ((i * heads + h) * total + (lengths[i] as number)) * hd };
}

/**
 * The slab that holds these rows' caches of one layer tensor with room for
 * one more position each: the one they are views of, when they are its rows
 * in order (or one row alone, whatever it is a view of), else a new one.
 */
function slabOf(ts: readonly Float32Tensor[], lengths: readonly number[], heads: number, hd: number, alloc: HostArray): Slab {
  const need = Math.max(...lengths) + 1;
  const first = ts[0] as Float32Tensor;
  const t = first.dims[2] as number;
  if (t >= need) {
    const data = ts.length === 1 ? first.data : sameBatch(ts);
    if (data !== null) return { data, capacity: t };
  }
  const capacity = slabCapacity(need);
  // Fresh, never reused: rows' caches are views of it after the step.
  const data = alloc(ts.length * heads * capacity * hd);
  for (const [i, r] of ts.entries()) padRow(r.data, r.dims[2] as number, lengths[i] as number, data, i, capacity, heads, hd);
  return { data, capacity };
}

/** A slab step's feeds, and the slabs they hold (by past.* name). */
export interface SlabFeeds {
  readonly feeds: Feeds;
  readonly slabs: ReadonlyMap<string, Slab>;
}

const plainArray: HostArray = (length) => new Float32Array(length);

export function gatherSlabs(
  cfg: ModelConfig,
  layers: { start: number; end: number },
  stage: number,
  rows: readonly BatchRow[],
  alloc: HostArray = plainArray,
): SlabFeeds {
  const b = rows.length;
  const heads = cfg.numKvHeads;
  const hd = cfg.headDim;
  const lengths = rows.map((r) => r.cache.length);
  const feeds: Feeds = { [stageInputName(stage)]: stackInputs(rows) };
  const slabs = new Map<string, Slab>();
  const pasts = rows.map((r) => r.cache.feeds(1));
  for (let l = layers.start; l < layers.end; l++) {
    for (const name of [STAGE_IO.pastKey(l), STAGE_IO.pastValue(l)]) {
      const slab = slabOf(
        pasts.map((p) => float32(p[name], name)),
        lengths,
        heads,
        hd,
        alloc,
      );
      slabs.set(name, slab);
      feeds[name] = { dtype: 'float32', dims: [b, heads, slab.capacity, hd], data: slab.data };
    }
  }
  Object.assign(feeds, fusedPositions(lengths));
  return { feeds, slabs };
}

/**
 * Writes each row's new key and value into the slabs at the row's length and
 * returns each row's outputs: a copy of its main output and its blocks of the
 * slabs as present.* (a cache takes them with update(…, 1)).
 */
export function scatterSlabs(
  cfg: ModelConfig,
  layers: { start: number; end: number },
  stage: number,
  numStages: number,
  rows: readonly BatchRow[],
  slabs: ReadonlyMap<string, Slab>,
  outputs: KvFeeds,
): KvFeeds[] {
  const b = rows.length;
  const heads = cfg.numKvHeads;
  const hd = cfg.headDim;
  const mainName = stageOutputName(stage, numStages);
  const main = float32(outputs[mainName], mainName);
  const width = main.data.length / b;
  const lengths = rows.map((r) => r.cache.length);
  const writes: { slab: Slab; src: ReturnType<typeof newPositions> }[] = [];
  const blocks: [string, Slab][] = [];
  for (let l = layers.start; l < layers.end; l++) {
    for (const [past, present, fresh] of [
      [STAGE_IO.pastKey(l), STAGE_IO.presentKey(l), FUSED_IO.newKey(l)],
      [STAGE_IO.pastValue(l), STAGE_IO.presentValue(l), FUSED_IO.newValue(l)],
    ] as const) {
      const slab = slabs.get(past);
      if (slab === undefined) throw new Error(`no slab for ${past}`);
      writes.push({ slab, src: newPositions(outputs, fresh, present, b, heads, hd, lengths) });
      blocks.push([present, slab]);
    }
  }
  // Every output checked before anything is written: a malformed one leaves every cache as it was.
  for (const { slab, src } of writes) {
    for (let i = 0; i < b; i++) {
      for (let h = 0; h < heads; h++) {
        const from = src.at(i, h);
        slab.data.set(src.data.subarray(from, from + hd), ((i * heads + h) * slab.capacity + (lengths[i] as number)) * hd);
      }
    }
  }
  return rows.map((_, i) => {
    const own: KvFeeds = { [mainName]: { dtype: 'float32', dims: [1, 1, width], data: main.data.slice(i * width, (i + 1) * width) } };
    for (const [name, slab] of blocks) {
      const size = heads * slab.capacity * hd;
      // A lone row's cache may be a block of an older slab: its block is the whole of what was fed.
      const at = b === 1 ? 0 : i * size;
      own[name] = { dtype: 'float32', dims: [1, heads, slab.capacity, hd], data: slab.data.subarray(at, at + size) };
    }
    return own;
  });
}
