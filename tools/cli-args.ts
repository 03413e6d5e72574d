import { parseArgs } from 'node:util';
import { ModelError } from '../shared/model/errors.js';
import { type Partition, parseRanges } from '../shared/model/partition.js';

export const DEFAULT_MODEL = 'austen-2m';
export const DEFAULT_STAGES = 3;
export const STAGE_CACHE = '.cache/stages';

/** Resolves --model: a folder path, or the id of a model under models/. */
export function modelDir(model: string): string {
  return model.includes('/') ? model : `models/${model}`;
}

/** --stages N or --layers 0-2,2-4,... */
export function partitionFrom(values: { stages?: string | undefined; layers?: string | undefined }): Partition {
  if (values.layers !== undefined) return { ranges: parseRanges(values.layers) };
  const n = Number(values.stages ?? DEFAULT_STAGES);
  if (!Number.isInteger(n) || n < 1) throw new ModelError('ERR_MODEL_BAD_PARTITION', '--stages', `"${values.stages}" is not a positive integer`);
  return { stages: n };
}

/** Parses argv with node's parseArgs; prints the error and usage, and exits 2, on bad flags. */
export function cliArgs<T extends Parameters<typeof parseArgs>[0]['options']>(options: T, usage: string) {
  try {
    return parseArgs({ options: options as NonNullable<T>, allowPositionals: false, strict: true }).values;
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n\n${usage}\n`);
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
