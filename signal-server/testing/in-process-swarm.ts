// An in-process swarm for tests and benchmarks: real stages, real onnxruntime
// sessions, real replicas (ReplicaCore, the code the volunteer page runs) and
// the real coordinator (registration, challenge steps, route choice, fail-over,
// eviction), joined by direct calls in place of WebRTC and Socket.IO (the e2e
// tests and the hostile-client tests cover those). Fast and seeded: where
// lying, vanishing and slow replicas are exercised by the thousand.
//
// Volunteers are named by the order they join, which is also how the
// coordinator hands out stages (the fewest replicas first): s<k>r<i> for the
// r replicas of stage k, then s<k>spare, s<k>spare2, … The coordinator draws
// routes with a random source that returns 0, so a route is the first r ready
// replicas of each stage and a replacement the first spare.
import type { StageManifest } from '../../shared/model/manifest.js';
import { CachingExecutor, hostOnly } from '../../shared/model/pipeline.js';
import { GREEDY, type SamplingParams } from '../../shared/model/sampling.js';
import { isServerPeer, type ServerToClientEvents } from '../../shared/protocol/messages.js';
import { parseChallenge, parseFrameMessage } from '../../shared/protocol/validate.js';
import type { FaultBehaviour } from '../../shared/swarm/faults.js';
import { ReplicaCore } from '../../shared/swarm/replica-core.js';
import type { Audit, AuditCounts } from '../coordinator/audit.js';
import { ReferenceOracle } from '../coordinator/challenge.js';
import { Coordinator, type VolunteerLink } from '../coordinator/coordinator.js';
import type { FallbackOptions } from '../coordinator/fallback.js';
import { GenerationError, type GenerationSession, type SessionTimeouts } from '../coordinator/generation.js';
import type { StepRecord } from '../coordinator/session-types.js';
import { OrtExecutor } from '../reference/ort-executor.js';

export interface InProcessSwarm {
  readonly manifest: StageManifest;
  readonly redundancy: number;
  /** Spare replicas per stage, ready to replace or retry. */
  readonly sparesPerStage: number;
  /** One executor per volunteer: R + spares per stage, and one for the coordinator's challenge steps. */
  readonly executors: readonly OrtExecutor[];
  readonly oracle: OrtExecutor;
  readonly timeouts: SessionTimeouts;
  /** The server's own replicas for stages short of volunteers, or null (FALLBACK=off). */
  readonly fallback: FallbackOptions | null;
  /** The mesh loop (MESH_LOOP; default on): `{ ...swarm, meshLoop: false }` runs the same replicas without it. */
  readonly meshLoop?: boolean;
  /** The most of a scored prompt's positions in one step (CoordinatorOptions.scoreRows): `{ ...swarm, scoreRows: 1 }`, a position a step. */
  readonly scoreRows?: number;
  /** FANOUT (default all): `majority` sends each receiver a majority's copies by the rotation, the rest on request. */
  readonly fanout?: 'all' | 'majority';
}

export interface InProcessResult {
  readonly tokens: number[];
  readonly finishReason: 'stop' | 'length' | null;
  readonly streamed: number[];
  /** Per accepted token, each stage's agreeing replicas. */
  readonly votes: number[][];
  /** Per accepted token, the stages the server computed (the fallback). */
  readonly serverStages: number[][];
  readonly audit: Audit;
  /** The last score each volunteer was told (it outlives an eviction, which forgets the audit). */
  readonly scores: ReadonlyMap<string, AuditCounts>;
  /** How many scores each volunteer was sent. */
  readonly scoreMessages: ReadonlyMap<string, number>;
  /** Volunteers the coordinator evicted, with the code it gave. */
  readonly evicted: ReadonlyMap<string, string>;
  readonly computedBy: Map<string, number>;
  /** Runtime calls each volunteer's stage made (a scored step's rows come from one: the head on every position). */
  readonly runsBy: Map<string, number>;
  readonly replacements: GenerationSession['replacements'];
  /** Replicas proven to equivocate, as the session reported them for eviction. */
  readonly equivocators: GenerationSession['reported'];
  /** Replicas receivers accused where every link held: suspected, not evicted. */
  readonly suspects: GenerationSession['suspects'];
  /** Per accepted token, ms from its input to its acceptance. */
  readonly stepMs: number[];
  /** Steps stage 0 computed before the coordinator began them (the mesh loop, a scored prompt sent ahead). */
  readonly stepsAhead: number;
  /** Steps stage-0 replicas began on the last stage's token, before the coordinator's (all replicas together). */
  readonly meshSteps: number;
  /** Steps rolled back because stage 0 computed them on an unverified token. */
  readonly meshRollBacks: number;
  /** A scored prompt's steps whose tokens went to stage 0 before they began. */
  readonly inputsAhead: number;
  readonly totalMs: number;
  readonly error: GenerationError | null;
}

export async function createInProcessSwarm(
  manifest: StageManifest,
  stageBytes: readonly Uint8Array[],
  redundancy: number,
  timeouts: SessionTimeouts = { joinMs: 5_000, stepMs: 10_000 },
  sparesPerStage = 1,
  /** The fallback (the server computes stages short of volunteers with its own runner), or off. */
  fallback: { readonly mode: FallbackOptions['mode']; readonly maxSessions?: number } | null = null,
): Promise<InProcessSwarm> {
  const executors: OrtExecutor[] = [];
  for (let i = 0; i < manifest.stages.length * (redundancy + sparesPerStage); i++) executors.push(await OrtExecutor.create(stageBytes));
  const oracle = await OrtExecutor.create(stageBytes);
  return {
    manifest,
    redundancy,
    sparesPerStage,
    executors,
    oracle,
    timeouts,
    // The server's runner of the stages, made on first use as the server makes it.
    fallback:
      fallback === null
        ? null
        : { mode: fallback.mode, maxSessions: fallback.maxSessions ?? 4, executor: () => OrtExecutor.create(stageBytes) },
  };
}

export async function releaseInProcessSwarm(s: InProcessSwarm): Promise<void> {
  for (const e of s.executors) await e.release();
  await s.oracle.release();
}

/** A man in the middle of the data channels: what actually arrives at `to` for each message `from` sent. */
export type Wire = (from: string, to: string, bytes: Uint8Array) => { from: string; bytes: Uint8Array }[];

export interface Crash {
  /** The replica that goes away after computing `afterSteps` steps… */
  readonly who: string;
  readonly afterSteps: number;
  /** …with its stage's spares there to take its place, or none (`null`: they left before the request). */
  readonly spare: string | null;
  /**
   * Its reports of that last step still reach the coordinator, and its leaving comes in the same task as
   * the last of them (one socket read can carry a tab's last messages and its disconnect); by default it
   * goes before it reports the step.
   */
  readonly reportsLastStep?: boolean;
}

/**
 * FANOUT for a test's server: the test's own, else WEBSWARM_FANOUT (all or
 * majority: so every in-process and Socket.IO test can be run with either fan-out), else the default.
 */
export function fanoutOf(own: 'all' | 'majority' | undefined): { fanout?: 'all' | 'majority' } {
  const v = own ?? process.env.WEBSWARM_FANOUT;
  if (v === undefined || v === '') return {};
  if (v !== 'all' && v !== 'majority') throw new Error(`WEBSWARM_FANOUT must be all or majority, not ${v}`);
  return { fanout: v };
}

/** The name of the i-th volunteer to join (see the file's comment). */
function nameOf(i: number, stages: number, r: number): string {
  const stage = i % stages;
  const k = Math.floor(i / stages);
  if (k < r) return `s${stage}r${k}`;
  const j = k - r;
  return j === 0 ? `s${stage}spare` : `s${stage}spare${j + 1}`;
}

/**
 * Runs one generation on a route of r replicas per stage (plus spares);
 * `faults` makes chosen replicas misbehave, `silent` never answer, `crash` leave mid-generation.
 */
export async function runInProcess(
  swarm: InProcessSwarm,
  promptIds: readonly number[],
  tokens: number,
  faults: Record<string, FaultBehaviour> = {},
  silent: readonly string[] = [],
  /** One replica that goes away, or several (each of a stage: the stage is lost). */
  crashes: Crash | readonly Crash[] | null = null,
  sampling: SamplingParams = GREEDY,
  wire: Wire | null = null,
  /**
   * Delivers the updates that tell a stage of new inputs this much later than
   * the newcomers' frames, as a browser can while it opens their data channels.
   */
  updateDelayMs = 0,
  /** The prompt scored first (completions' echo): each position's record, as SessionRunner.runIds gives it. */
  scored?: (position: number, record: StepRecord) => void,
): Promise<InProcessResult> {
  const { manifest, executors } = swarm;
  const crashList: readonly Crash[] = crashes === null ? [] : 'who' in crashes ? [crashes] : crashes;
  const STAGES = manifest.stages.length;
  const R = swarm.redundancy;
  const computedBy = new Map<string, number>();
  const runsBy = new Map<string, number>();
  const scores = new Map<string, AuditCounts>();
  const scoreMessages = new Map<string, number>();
  const evicted = new Map<string, string>();
  const gone = new Set<string>();
  /** Crashing replicas whose last step's reports go out, the leaving with the last of them. */
  const leaving = new Set<string>();
  const cores = new Map<string, ReplicaCore>();
  const later = (f: () => void) => setImmediate(f);
  let joined = 0;
  let meshSteps = 0;
  const coordinator: Coordinator = new Coordinator(
    { modelId: manifest.modelId, numStages: STAGES, baseUrl: '/in-process', manifest, tokenizer: null },
    {
      redundancy: R,
      allowFaults: true,
      routeWaitMs: 5_000,
      timeouts: swarm.timeouts,
      oracle: new ReferenceOracle(manifest, swarm.oracle),
      spotCheckRate: 0,
      random: () => 0,
      newId: () => nameOf(joined++, STAGES, R),
      ...(swarm.fallback === null ? {} : { fallback: swarm.fallback }),
      ...(swarm.meshLoop === undefined ? {} : { meshLoop: swarm.meshLoop }),
      ...(swarm.scoreRows === undefined ? {} : { scoreRows: swarm.scoreRows }),
      ...fanoutOf(swarm.fanout),
    },
    () => {},
  );

  /** One volunteer: the coordinator's messages to it, dispatched as the page does. */
  const volunteer = (index: number): void => {
    const executor = executors[index] as OrtExecutor;
    let id = '';
    const quiet = () => silent.includes(id) || gone.has(id);
    const handlers: { [E in keyof ServerToClientEvents]?: (...args: Parameters<ServerToClientEvents[E]>) => void } = {
      'volunteer:welcome': (m) => {
        id = m.volunteerId;
      },
      'volunteer:assign': (a) => {
        const core = new ReplicaCore(
          manifest,
          a.stage,
          new CachingExecutor(manifest, {
            run: (stage, feeds, fetches) => {
              runsBy.set(id, (runsBy.get(id) ?? 0) + 1);
              return executor.run(stage, hostOnly(feeds), fetches);
            },
          }),
          {
            frames: (to, msgs) => {
              if (quiet()) return;
              later(() => {
                for (const m of msgs) {
                  // The server's own replica (the fallback) gets its frames through the coordinator, as over a socket.
                  if (isServerPeer(to)) coordinator.frame(id, to, [m]);
                  else if (wire === null) cores.get(to)?.frame(id, m);
                  else for (const d of wire(id, to, m)) cores.get(to)?.frame(d.from, d.bytes);
                }
              });
            },
            meshStep: () => {
              meshSteps += 1;
            },
            digest: (m) => {
              if (quiet()) return;
              const last = a.stage === STAGES - 1;
              if (!last && leaving.has(id)) gone.add(id);
              later(() => {
                coordinator.digest(id, m);
                if (!last && gone.has(id)) coordinator.left(id);
              });
            },
            logits: (m) => {
              if (quiet()) return;
              if (leaving.has(id)) gone.add(id);
              later(() => {
                coordinator.logits(id, m.sessionId, m.step, new Float32Array(m.logits), m.resets ?? 0);
                if (gone.has(id)) coordinator.left(id);
              });
            },
            failed: (m) => later(() => coordinator.failed(id, m)),
            computed: () => {
              const n = (computedBy.get(id) ?? 0) + 1;
              computedBy.set(id, n);
              const crash = crashList.find((c) => c.who === id && n === c.afterSteps);
              if (crash?.reportsLastStep === true) leaving.add(id);
              else if (crash !== undefined) {
                // The tab closes: nothing more comes from it, and the coordinator hears it left.
                gone.add(id);
                later(() => coordinator.left(id));
              }
            },
            rejected: () => {},
          },
          faults[id] ?? null,
        );
        cores.set(id, core);
        later(() => coordinator.ready(id, { modelId: a.modelId, stage: a.stage, stepMs: 1 }));
      },
      'volunteer:challenge': (raw) => {
        const core = cores.get(id);
        const m = parseChallenge(raw, manifest.model.hiddenSize, manifest.model.vocabSize);
        if (core === undefined || !m.ok) return;
        void core.challenge(m.value).then((digest) => coordinator.proof(id, { challengeId: m.value.challengeId, digest }));
      },
      'volunteer:score': (s) => {
        scores.set(id, { agreed: s.agreed, disagreed: s.disagreed });
        scoreMessages.set(id, (scoreMessages.get(id) ?? 0) + 1);
      },
      'server:error': (e) => {
        if (/^ERR_(EVICTED|EQUIVOCATION|CHALLENGE_FAILED)$/.test(e.code)) evicted.set(id, e.code);
      },
      // Copied when sent, as Socket.IO serialises them: a later change to the route must not reach an earlier message.
      'session:open': (sent) => {
        const m = structuredClone(sent);
        if (cores.get(id)?.open(m) === true) later(() => coordinator.joined(id, m.sessionId));
      },
      'session:update': (sent) => {
        const m = structuredClone(sent);
        if (updateDelayMs > 0 && m.resendTo.length === 0) setTimeout(() => cores.get(id)?.update(m), updateDelayMs);
        else later(() => cores.get(id)?.update(m));
      },
      'step:input': (m) => later(() => cores.get(id)?.input(structuredClone(m))),
      frame: ({ from, data }) => {
        if (quiet()) return;
        const m = parseFrameMessage({ from, data }, 'from');
        if (!m.ok) throw new Error(`the coordinator sent a bad frame event: ${m.reason}`);
        const copies = m.value.data;
        later(() => {
          for (const bytes of copies) cores.get(id)?.frame(from, bytes);
        });
      },
      'session:close': ({ sessionId }) => cores.get(id)?.close(sessionId),
    };
    const link: VolunteerLink = {
      send: (event, ...args) => {
        const h = handlers[event] as ((...a: typeof args) => void) | undefined;
        h?.(...args);
      },
      disconnect: () => {
        gone.add(id);
        later(() => coordinator.left(id));
      },
    };
    coordinator.hello(link, '127.0.0.1', { backend: 'wasm', adapter: null, fault: null, clientKey: null });
  };

  for (let i = 0; i < STAGES * (R + swarm.sparesPerStage); i++) volunteer(i);
  const total = STAGES * (R + swarm.sparesPerStage);
  for (const until = Date.now() + 30_000; coordinator.volunteers().filter((v) => v.ready).length < total; ) {
    if (Date.now() > until) throw new Error('the in-process volunteers did not pass their challenges within 30 s');
    await new Promise((r) => setTimeout(r, 5));
  }
  for (const crash of crashList) {
    if (crash.spare !== null) continue;
    // No spare for the crashing replica's stage: its spares leave before the request.
    const stage = Number(crash.who.slice(1, crash.who.indexOf('r')));
    for (const v of coordinator.volunteers()) if (v.stage === stage && v.id.includes('spare')) coordinator.left(v.id);
  }

  const streamed: number[] = [];
  const stepMs: number[] = [];
  const votes: number[][] = [];
  const serverStages: number[][] = [];
  let session: GenerationSession | null = null;
  const result = (r: { tokens: number[]; finishReason: 'stop' | 'length' | null }, totalMs: number, error: GenerationError | null) => ({
    ...r,
    streamed,
    votes,
    serverStages,
    audit: coordinator.audit,
    scores,
    scoreMessages,
    evicted,
    computedBy,
    runsBy,
    replacements: session?.replacements ?? [],
    equivocators: session?.reported ?? [],
    suspects: session?.suspects ?? [],
    stepsAhead: session?.stepsAhead ?? 0,
    meshSteps,
    meshRollBacks: session?.meshRollBacks ?? 0,
    inputsAhead: session?.inputsAhead ?? 0,
    stepMs,
    totalMs,
    error,
  });
  const t0 = performance.now();
  try {
    const run = await coordinator.runIds(
      promptIds,
      tokens,
      sampling,
      undefined,
      (t, rec, s) => {
        session = s;
        stepMs.push(rec.ms);
        streamed.push(t);
        votes.push(rec.votes.map((v) => v.agreed));
        serverStages.push(rec.votes.filter((v) => v.server).map((v) => v.stage));
        return undefined;
      },
      undefined,
      scored,
    );
    session = run.session;
    return result(run.result, performance.now() - t0, null);
  } catch (e) {
    if (!(e instanceof GenerationError)) throw e;
    return result({ tokens: [], finishReason: null }, 0, e);
  } finally {
    // Let stragglers' late reports reach the audit.
    await new Promise((r) => setTimeout(r, 50));
    coordinator.shutdown();
  }
}
