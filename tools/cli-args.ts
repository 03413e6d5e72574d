import { type ParseArgsOptionsConfig, parseArgs } from 'node:util';
import { ModelError } from '../shared/model/errors.js';
import { type Partition, parseRanges } from '../shared/model/partition.js';
import { isWeightPrecision, WEIGHT_PRECISIONS, type WeightPrecision } from '../shared/model/quantize.js';
import { unknownOptionHint } from '../signal-server/closest-name.js';
import { DEFAULT_STAGES } from '../signal-server/defaults.js';

export { DEFAULT_MODEL, modelDir, STAGE_CACHE } from '../signal-server/defaults.js';

/** --stages N or --layers 0-2,2-4,... */
export function partitionFrom(values: { stages?: string | undefined; layers?: string | undefined }): Partition {
  if (values.layers !== undefined) return { ranges: parseRanges(values.layers) };
  const n = Number(values.stages ?? DEFAULT_STAGES);
  if (!Number.isInteger(n) || n < 1)
    throw new ModelError('ERR_MODEL_BAD_PARTITION', '--stages', `"${values.stages}" is not a positive integer`);
  return { stages: n };
}

/** --weights f32|f16|q8|q4 (f32 when absent). */
export function weightsFrom(value: string | undefined): WeightPrecision {
  const v = value ?? 'f32';
  if (!isWeightPrecision(v))
    throw new ModelError('ERR_MODEL_BAD_CONFIG', '--weights', `"${v}" is not one of ${WEIGHT_PRECISIONS.join(', ')}`);
  return v;
}

/** Parses argv with node's parseArgs; prints the error and usage, and exits 2, on bad flags. */
export function cliArgs<const O extends ParseArgsOptionsConfig>(options: O, usage: string) {
  try {
    return parseArgs({ options, allowPositionals: false, strict: true }).values;
  } catch (e) {
    process.stderr.write(`${unknownOptionHint(e, Object.keys(options))}\n\n${usage}\n`);
    process.exit(2);
  }
}

/** Runs a CLI's main; a ModelError or RangeError prints its message and exits 1. */
export function runCli(main: () => Promise<void>): void {
  main().catch((e: unknown) => {
    process.stderr.write(`error: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  });
}
