// An in-process swarm for tests and benchmarks: real stages, real onnxruntime
// sessions, real replicas (ReplicaCore, the code the volunteer page runs) and
// the real coordinator session, joined by direct calls in place of WebRTC and
// Socket.IO (the e2e tests cover those). Fast and seeded: where lying,
// vanishing and slow replicas are exercised by the thousand.
import type { StageManifest } from '../../shared/model/manifest.js';
import { GREEDY, type SamplingParams } from '../../shared/model/sampling.js';
import type { FaultBehaviour } from '../../shared/swarm/faults.js';
import { ReplicaCore } from '../../shared/swarm/replica-core.js';
import { Audit } from '../coordinator/audit.js';
import { type GenerationError, GenerationSession, type SessionTimeouts } from '../coordinator/generation.js';
import { OrtExecutor } from '../reference/ort-executor.js';

export interface InProcessSwarm {
  readonly manifest: StageManifest;
  readonly redundancy: number;
  /** Spare replicas per stage, ready to replace or retry. */
  readonly sparesPerStage: number;
  /** One executor per replica slot: R + spares per stage. */
  readonly executors: readonly OrtExecutor[];
  readonly timeouts: SessionTimeouts;
}

export interface InProcessResult {
  readonly tokens: number[];
  readonly finishReason: 'stop' | 'length' | null;
  readonly streamed: number[];
  readonly votes: number[][];
  readonly audit: Audit;
  readonly computedBy: Map<string, number>;
  readonly replacements: GenerationSession['replacements'];
  /** Replicas proven to equivocate, as the session reported them for eviction. */
  readonly equivocators: GenerationSession['reported'];
  /** Per accepted token, ms from its input to its acceptance. */
  readonly stepMs: number[];
  readonly totalMs: number;
  readonly error: GenerationError | null;
}

export async function createInProcessSwarm(
  manifest: StageManifest,
  stageBytes: readonly Uint8Array[],
  redundancy: number,
  timeouts: SessionTimeouts = { joinMs: 5_000, stepMs: 10_000 },
  sparesPerStage = 1,
): Promise<InProcessSwarm> {
  const executors: OrtExecutor[] = [];
  for (let i = 0; i < manifest.stages.length * (redundancy + sparesPerStage); i++) executors.push(await OrtExecutor.create(stageBytes));
  return { manifest, redundancy, sparesPerStage, executors, timeouts };
}

export async function releaseInProcessSwarm(s: InProcessSwarm): Promise<void> {
  for (const e of s.executors) await e.release();
}

/** A man in the middle of the data channels: what actually arrives at `to` for each message `from` sent. */
export type Wire = (from: string, to: string, bytes: Uint8Array) => { from: string; bytes: Uint8Array }[];

export interface Crash {
  /** The replica that goes away after computing `afterSteps` steps… */
  readonly who: string;
  readonly afterSteps: number;
  /** …and the spare of its stage that the coordinator puts in its place (or none). */
  readonly spare: string | null;
}

/**
 * Runs one generation on a route of 3 × 3 replicas (plus one spare per stage);
 * `faults` makes chosen replicas misbehave, `silent` never answer, `crash` leave mid-generation.
 */
export async function runInProcess(
  swarm: InProcessSwarm,
  promptIds: readonly number[],
  tokens: number,
  faults: Record<string, FaultBehaviour> = {},
  silent: readonly string[] = [],
  crash: Crash | null = null,
  sampling: SamplingParams = GREEDY,
  wire: Wire | null = null,
  /**
   * Delivers the updates that tell a stage of new inputs this much later than
   * the newcomers' frames, as a browser can while it opens their data channels.
   */
  updateDelayMs = 0,
): Promise<InProcessResult> {
  const { manifest, executors } = swarm;
  const STAGES = manifest.stages.length;
  const R = swarm.redundancy;
  const route = Array.from({ length: STAGES }, (_, s) => Array.from({ length: R }, (_, i) => `s${s}r${i}`));
  // The first spare of a stage is `s<k>spare`, further ones `s<k>spare2`, `s<k>spare3`…
  const spares = Array.from({ length: STAGES }, (_, s) =>
    Array.from({ length: swarm.sparesPerStage }, (_, j) => (j === 0 ? `s${s}spare` : `s${s}spare${j + 1}`)),
  );
  const computedBy = new Map<string, number>();
  const gone = new Set<string>();
  const audit = new Audit();
  const cores = new Map<string, ReplicaCore>();
  let session: GenerationSession | null = null;
  const later = (f: () => void) => setImmediate(f);
  for (const [stage, ids] of route.entries()) {
    for (const [i, id] of [...ids, ...(spares[stage] as string[])].entries()) {
      const executor = executors[stage * (R + swarm.sparesPerStage) + i] as OrtExecutor;
      const silenced = silent.includes(id);
      const quiet = () => silenced || gone.has(id);
      const core = new ReplicaCore(
        manifest,
        stage,
        executor,
        {
          frames: (to, msgs) => {
            if (quiet()) return;
            later(() => {
              for (const m of msgs) {
                if (wire === null) cores.get(to)?.frame(id, m);
                else for (const d of wire(id, to, m)) cores.get(to)?.frame(d.from, d.bytes);
              }
            });
          },
          digest: (m) =>
            quiet() || later(() => session?.onDigest(id, m.step, [...m.digest], m.computeMs, [...m.input], m.received, m.resets)),
          logits: (m) => quiet() || later(() => session?.onLogits(id, m.step, new Float32Array(m.logits))),
          failed: (m) => later(() => session?.onFailure(id, m.step, m.code, m.message)),
          computed: () => {
            const n = (computedBy.get(id) ?? 0) + 1;
            computedBy.set(id, n);
            if (crash?.who === id && n === crash.afterSteps) {
              // The tab closes: nothing more comes from it, and the coordinator hears it left.
              gone.add(id);
              later(() => (crash.spare === null ? session?.onLeft(id) : session?.replace(id, crash.spare)));
            }
          },
          rejected: () => {},
        },
        faults[id] ?? null,
      );
      cores.set(id, core);
    }
  }
  session = new GenerationSession(
    1,
    route,
    manifest,
    {
      // Copied when sent, as Socket.IO serialises them: a later change to the route must not reach an earlier message.
      open: (v, m) => {
        cores.get(v)?.open(structuredClone(m));
        later(() => session?.onJoined(v));
      },
      update: (v, sent) => {
        const m = structuredClone(sent);
        if (updateDelayMs > 0 && m.resendTo.length === 0) setTimeout(() => cores.get(v)?.update(m), updateDelayMs);
        else later(() => cores.get(v)?.update(m));
      },
      input: (v, m) => later(() => cores.get(v)?.input(m)),
      close: (v, id) => cores.get(v)?.close(id),
    },
    swarm.timeouts,
    audit,
    {
      spares: (stage, exclude) => (spares[stage] ?? []).filter((id) => !exclude.has(id) && !gone.has(id)),
      link: () => {},
    },
  );
  const streamed: number[] = [];
  const stepMs: number[] = [];
  const votes: number[][] = [];
  const result = (r: { tokens: number[]; finishReason: 'stop' | 'length' | null }, totalMs: number, error: GenerationError | null) => ({
    ...r,
    streamed,
    votes,
    audit,
    computedBy,
    replacements: session.replacements,
    equivocators: session.reported,
    stepMs,
    totalMs,
    error,
  });
  const t0 = performance.now();
  try {
    const r = await session.run(promptIds, tokens, sampling, (t, rec) => {
      stepMs.push(rec.ms);
      streamed.push(t);
      votes.push(rec.votes.map((v) => v.agreed));
    });
    return result(r, performance.now() - t0, null);
  } catch (e) {
    return result({ tokens: [], finishReason: null }, 0, e as GenerationError);
  } finally {
    // Let stragglers' late reports reach the audit.
    await new Promise((r) => setTimeout(r, 50));
  }
}
