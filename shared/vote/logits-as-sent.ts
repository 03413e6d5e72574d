import { type Draw, drawToken, randomAt, type SamplingParams } from '../model/sampling.js';
import type { MeshLoop, SessionOpen } from '../protocol/messages.js';
import { drawnFormOf } from './drawn-forms.js';
import { scoredFormsOf, topLogitsOf } from './top-logits.js';

/**
 * What a last-stage replica sends of step `step`'s output `data`, `rows` rows of `vocabSize` whose first stands at
 * position `firstRow`, as its session:open asks: scored forms where the rows score given tokens (`scoreTokens`), a
 * step's one row as its drawn form (`topLogits` with `drawLogits`: drawn-forms.ts) or its top form (`topLogits`),
 * else the rows (and output of another length as it is: refused).
 */
export function logitsAsSent(
  open: Pick<SessionOpen, 'topLogits' | 'scoreTokens' | 'drawLogits'>,
  data: Float32Array,
  rows: number,
  firstRow: number,
  vocabSize: number,
  step: number,
  draw: Draw | null = null,
): Float32Array<ArrayBuffer> {
  const given = open.scoreTokens;
  if (data.length !== rows * vocabSize) return data.slice();
  if (given !== undefined && firstRow + rows < given.length)
    return scoredFormsOf(data, vocabSize, given.slice(firstRow + 1, firstRow + rows + 1));
  if (rows !== 1 || open.topLogits === undefined) return data.slice();
  const asked = open.drawLogits;
  return asked === undefined
    ? topLogitsOf(data, open.topLogits)
    : drawnFormOf(data, open.topLogits, asked.sampling, randomAt(asked.sampling.seed, asked.draws + step), draw);
}

/** Step `step`'s draw on `row` where the session asks for drawn forms (one row a step), else null: made once a step. */
export function drawOf(open: Pick<SessionOpen, 'topLogits' | 'drawLogits'>, row: Float32Array, step: number): Draw | null {
  const asked = open.drawLogits;
  if (asked === undefined || open.topLogits === undefined) return null;
  return drawToken(row, asked.sampling, () => randomAt(asked.sampling.seed, asked.draws + step));
}

/** Whether the mesh loop draws the same number with the same settings as the drawn form (so one draw serves both). */
export function sameDraw(loop: MeshLoop, asked: SessionOpen['drawLogits']): boolean {
  if (asked === undefined || (loop.draws ?? 0) !== asked.draws) return false;
  const a: SamplingParams = loop.sampling;
  const b = asked.sampling;
  const plain = (p: SamplingParams) =>
    (p.logitBias?.length ?? 0) === 0 && (p.frequencyPenalty ?? 0) === 0 && (p.presencePenalty ?? 0) === 0;
  return a.temperature === b.temperature && a.topK === b.topK && a.topP === b.topP && a.seed === b.seed && plain(a) && plain(b);
}
