/**
 * Where a step's time goes in this tab, for the bench's breakdown of a token's
 * path (bench/step-path.ts): wall-clock stamps (the epoch in ms, comparable
 * with the server's on one machine) of a step's input arriving, its compute
 * in the worker and its output leaving. Only on a page opened with ?trace=1;
 * bounded; read by the bench as window.webswarmTrace.
 */
import type { SessionExecutor } from '../../shared/model/pipeline.js';

export type TracePhase =
  /** step:input from the coordinator (stage 0). */
  | 'input'
  /** The first data-channel message of a frame from the previous stage. */
  | 'recv'
  /** The replica hands the step to the worker, and has its output back. */
  | 'run-start'
  | 'run-end'
  /** The output leaves: frames to the next stage, or logits to the coordinator. */
  | 'sent'
  /** The page hands a last stage's logits to its socket (on either data path). */
  | 'logits';

export interface TraceEntry {
  readonly session: number;
  readonly step: number;
  readonly phase: TracePhase;
  /** performance.timeOrigin + performance.now(): the epoch, in ms. */
  readonly t: number;
  /** session.run's time inside the worker (run-end only). */
  readonly runMs?: number;
}

/** Stamps kept (a bench run is a few hundred steps). */
const MAX_ENTRIES = 50_000;

export class StepTrace {
  readonly entries: TraceEntry[] = [];
  /** Steps handed to the executor per session: the executor is not told the step. */
  private readonly calls = new Map<number, number>();

  mark(session: number, step: number, phase: TracePhase, runMs?: number): void {
    if (this.entries.length >= MAX_ENTRIES) return;
    const t = performance.timeOrigin + performance.now();
    this.entries.push(runMs === undefined ? { session, step, phase, t } : { session, step, phase, t, runMs });
  }

  /** The session and step in a frame message's header (shared/protocol/frames.ts), chunk 0 only. */
  markFrame(bytes: Uint8Array, phase: 'recv' | 'sent'): void {
    if (bytes.byteLength < 24) return;
    const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (v.getUint16(20, true) !== 0) return;
    this.mark(v.getUint32(8, true), v.getUint32(12, true), phase);
  }

  /** Stamps each step around `inner` (challenges, on negative sessions, are left out); steps are counted per session. */
  wrap(inner: SessionExecutor, computeMs: () => number): SessionExecutor {
    return {
      step: async (session, stage, input, logitsFrom) => {
        if (session < 0) return inner.step(session, stage, input, logitsFrom);
        const step = this.calls.get(session) ?? 0;
        this.calls.set(session, step + 1);
        this.mark(session, step, 'run-start');
        const out = await inner.step(session, stage, input, logitsFrom);
        this.mark(session, step, 'run-end', computeMs());
        return out;
      },
      truncate: (session, positions) => inner.truncate(session, positions),
      release: (session) => {
        this.calls.delete(session);
        inner.release(session);
      },
    };
  }
}
