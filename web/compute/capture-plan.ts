// How many sessions a volunteer's stage holds when it runs with graph capture
// (captured-stages.ts): each session takes a row of KV cache the model's
// whole context long, allocated when the stage loads, so the rows are counted
// before, and the tab's ready tells the coordinator how many sessions it may
// route here (the route picker never routes more; a refusal beyond them is
// the replica's due, not a no-show).
import type { StageManifest } from '../../shared/model/manifest.js';
import { isSessionLimit, MAX_SESSIONS_PER_REPLICA } from '../../shared/swarm/replica-core.js';
import type { CaptureOptions } from './captured-stages.js';

/** GPU memory a stage's captured rows may take together, whatever the model: a tab's share of an ordinary GPU. */
export const CAPTURE_ROWS_BUDGET_BYTES = 512 * 2 ** 20;
/**
 * How long a session's first step waits for a row when every row is held: a
 * session closed while it computes frees its row once the inputs it had taken
 * are computed (ReplicaCore releases it then; up to MAX_STEPS_AHEAD steps of a
 * slow replica), and the coordinator may open the next one before. Twice the
 * coordinator's default step timeout (30 s): a wait that long is the
 * coordinator's to time out, not the tab's to fail.
 */
export const CAPTURE_ROW_WAIT_MS = 60_000;

/**
 * The volunteer page's ?capture=: absent or "off", no capture (undefined); "on",
 * as many sessions as fit (null); a number of sessions in 1..MAX_SESSIONS_PER_REPLICA. Anything else throws, naming it.
 */
export function parseCaptureParam(raw: string | null): number | null | undefined {
  if (raw === null || raw === 'off') return undefined;
  if (raw === 'on') return null;
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || !isSessionLimit(n))
    throw new Error(`?capture= must be on, off or a number of sessions in 1..${MAX_SESSIONS_PER_REPLICA}, not "${raw}"`);
  return n;
}

export type CapturePlan =
  | {
      readonly ok: true;
      /** Sessions the replica keeps open at once (its ready says so). */
      readonly sessions: number;
      /** The captured stage's options: one row a session, and one kept for the coordinator's challenges (run one at a time). */
      readonly options: CaptureOptions;
    }
  | { readonly ok: false; readonly why: string };

/**
 * The rows for `stage` of `manifest`: as many sessions as `wanted` (at most
 * MAX_SESSIONS_PER_REPLICA; null: as many as fit), each row's buffer for a
 * layer within `bufferLimit` (the adapter's largest buffer it binds) and all
 * rows within CAPTURE_ROWS_BUDGET_BYTES. Not ok, with the reason, where the
 * form is not fused or not even one session and the challenge's row fit.
 */
export function planCapture(manifest: StageManifest, stage: number, bufferLimit: number, wanted: number | null): CapturePlan {
  if (manifest.graph !== 'fused') return { ok: false, why: `graph capture runs the fused graph form only, not ${manifest.graph}` };
  const entry = manifest.stages[stage];
  if (entry === undefined) return { ok: false, why: `the manifest has no stage ${stage}` };
  if (wanted !== null && !isSessionLimit(wanted))
    return { ok: false, why: `capture sessions must be an integer in 1..${MAX_SESSIONS_PER_REPLICA}, not ${wanted}` };
  const m = manifest.model;
  /** One row's keys (or values) of one layer: what a row adds to each KV buffer. */
  const rowLayerBytes = m.numKvHeads * m.maxPositions * m.headDim * 4;
  const layers = entry.layers.end - entry.layers.start;
  const slots = Math.min(
    (wanted ?? MAX_SESSIONS_PER_REPLICA) + 1,
    Math.floor(bufferLimit / rowLayerBytes),
    Math.floor(CAPTURE_ROWS_BUDGET_BYTES / (2 * layers * rowLayerBytes)),
  );
  if (slots < 2)
    return {
      ok: false,
      why: `stage ${stage} cannot hold two rows of ${m.maxPositions} positions (${rowLayerBytes} bytes a layer each, ${layers} layers; buffers up to ${bufferLimit} bytes, ${CAPTURE_ROWS_BUDGET_BYTES} bytes for the rows)`,
    };
  return { ok: true, sessions: slots - 1, options: { slots, reservedRows: 1, rowWaitMs: CAPTURE_ROW_WAIT_MS } };
}
