/**
 * Placing a volunteer by what it can hold: the stages of a partition as the
 * placement sees them (memory needed, largest single buffer), and the named
 * refusal for a volunteer that can hold none of them.
 */
import type { LayerRange } from '../../shared/model/stage-graph.js';
import { type ModelSizes, stageOfRange } from './partition-planner.js';
import type { Stage } from './stage-assignment.js';

/** The stages of these layer ranges, or null when the model's sizes are not known (then any volunteer holds any stage). */
export function stagesOf(sizes: ModelSizes | undefined, ranges: readonly LayerRange[]): Stage[] | null {
  if (sizes === undefined || ranges[ranges.length - 1]?.end !== sizes.layerBytes.length) return null;
  return ranges.map((r, i) => stageOfRange(sizes, i, r));
}

/** Why a volunteer of this capacity holds no stage (ERR_CAPACITY's message): what it offers against the least any stage needs. */
export function cannotHold(memoryBytes: number, bufferLimitBytes: number | null, fits: { stageFits(): readonly Stage[] | null }): string {
  const stages = fits.stageFits() ?? [];
  const need = Math.min(...stages.map((s) => s.needBytes));
  const buffer = Math.min(...stages.map((s) => s.largestBufferBytes ?? 0));
  const binds = bufferLimitBytes === null ? '' : ` and binds buffers of at most ${bufferLimitBytes} bytes`;
  return (
    `this volunteer offers ${memoryBytes} bytes${binds}, and no stage of this partition fits it ` +
    `(the smallest needs ${need} bytes, the smallest largest buffer is ${buffer} bytes); it would hold nothing, so it is not taken`
  );
}
