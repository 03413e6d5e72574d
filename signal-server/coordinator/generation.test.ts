// The data path of a token with real stages, real onnxruntime sessions, real
// replicas (ReplicaCore, the same code the volunteer page runs) and the real
// coordinator session, joined in one process: frames and reports are passed
// by direct calls instead of WebRTC and Socket.IO, which the e2e tests cover.
// This is where lying and vanishing replicas are tested quickly and seeded.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StageManifest } from '../../shared/model/manifest.js';
import { GREEDY } from '../../shared/model/sampling.js';
import { type FaultBehaviour, type FaultKind, faultBehaviour } from '../../shared/swarm/faults.js';
import { ReplicaCore } from '../../shared/swarm/replica-core.js';
import { ensureStages, loadStageSet } from '../models/model-folder.js';
import { OrtExecutor } from '../reference/ort-executor.js';
import { ReferenceRunner } from '../reference/reference-runner.js';
import { GOLDEN_MODELS } from '../testing/golden.js';
import { Audit } from './audit.js';
import { type GenerationError, GenerationSession } from './generation.js';

const STAGES = 3;
const R = 3;
const TOKENS = 10;
const TIMEOUTS = { joinMs: 5_000, stepMs: 10_000 };

let cache: string;
let manifest: StageManifest;
let stageBytes: readonly Uint8Array[];
let reference: ReferenceRunner;
let promptIds: number[];
let expected: number[];
const executors: OrtExecutor[] = [];

beforeAll(async () => {
  cache = mkdtempSync(join(tmpdir(), 'webswarm-gen-'));
  const { dir } = await ensureStages(GOLDEN_MODELS['tiny-gqa-bias'] as string, { stages: STAGES }, cache);
  const set = await loadStageSet(dir);
  manifest = set.manifest;
  stageBytes = set.stageBytes;
  reference = await ReferenceRunner.fromStageDir(dir);
  promptIds = reference.tokenizer.encode('It is a truth universally acknowledged');
  expected = (await reference.generateIds(promptIds, TOKENS, GREEDY)).tokens;
  for (let i = 0; i < STAGES * (R + 1); i++) executors.push(await OrtExecutor.create(stageBytes));
});

afterAll(async () => {
  for (const e of executors) await e.release();
  await reference.close();
  rmSync(cache, { recursive: true, force: true });
});

function fault(kind: FaultKind, seed = 1): FaultBehaviour {
  return faultBehaviour(kind, seed);
}

interface Crash {
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
async function runSwarm(faults: Record<string, FaultBehaviour> = {}, silent: string[] = [], crash: Crash | null = null) {
  const route = Array.from({ length: STAGES }, (_, s) => Array.from({ length: R }, (_, i) => `s${s}r${i}`));
  const spares = Array.from({ length: STAGES }, (_, s) => `s${s}spare`);
  const computedBy = new Map<string, number>();
  const gone = new Set<string>();
  const audit = new Audit();
  const cores = new Map<string, ReplicaCore>();
  let session: GenerationSession | null = null;
  const later = (f: () => void) => setImmediate(f);
  for (const [stage, ids] of route.entries()) {
    for (const [i, id] of [...ids, spares[stage] as string].entries()) {
      const executor = executors[stage * (R + 1) + i] as OrtExecutor;
      const silenced = silent.includes(id);
      const quiet = () => silenced || gone.has(id);
      const core = new ReplicaCore(
        manifest,
        stage,
        executor,
        {
          frames: (to, msgs) => {
            if (!quiet())
              later(() => {
                for (const m of msgs) cores.get(to)?.frame(id, m);
              });
          },
          digest: (m) => quiet() || later(() => session?.onDigest(id, m.step, [...m.digest], m.computeMs)),
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
      open: (v, m) => {
        cores.get(v)?.open(m);
        later(() => session?.onJoined(v));
      },
      update: (v, m) => later(() => cores.get(v)?.update(m)),
      input: (v, m) => later(() => cores.get(v)?.input(m)),
      close: (v, id) => cores.get(v)?.close(id),
    },
    TIMEOUTS,
    audit,
  );
  const streamed: number[] = [];
  const votes: number[][] = [];
  try {
    const r = await session.run(promptIds, TOKENS, GREEDY, (t, rec) => {
      streamed.push(t);
      votes.push(rec.votes.map((v) => v.agreed));
    });
    return { ...r, streamed, votes, audit, computedBy, replacements: session.replacements, error: null };
  } catch (e) {
    return {
      tokens: [],
      finishReason: null,
      streamed,
      votes,
      audit,
      computedBy,
      replacements: session.replacements,
      error: e as GenerationError,
    };
  } finally {
    // Let stragglers' late reports reach the audit.
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('a generation through replicas', () => {
  it.each<[FaultKind, string]>([
    ['nan', 's1r2'],
    ['wrong-shape', 's0r0'],
    ['wrong-shape', 's2r1'],
    ['stale', 's1r1'],
    ['wrong-token', 's2r0'],
    ['silent', 's2r2'],
    ['slow', 's1r0'],
  ])('a %s replica (%s) does not change a token', async (kind, who) => {
    const r = await runSwarm({ [who]: fault(kind) });
    expect(r.error).toBeNull();
    expect(r.tokens).toEqual(expected);
  });

  it('honest replicas give the reference tokens, all agreeing', async () => {
    const r = await runSwarm();
    expect(r.error).toBeNull();
    expect(r.tokens).toEqual(expected);
    for (const v of r.votes) for (const agreed of v) expect(agreed).toBeGreaterThanOrEqual(2);
    expect(r.audit.get('s1r2')).toEqual({ agreed: TOKENS, disagreed: 0 });
  });

  it.each([0, 1, 2])('one noisy replica in stage %i is outvoted and shows in the audit', async (stage) => {
    const liar = `s${stage}r1`;
    const r = await runSwarm({ [liar]: fault('noise', stage + 1) });
    expect(r.error).toBeNull();
    expect(r.tokens).toEqual(expected);
    expect(r.audit.get(liar).disagreed).toBeGreaterThan(0);
    expect(r.audit.get(liar).agreed).toBe(0);
    expect(r.audit.get(`s${stage}r0`)).toEqual({ agreed: TOKENS, disagreed: 0 });
  });

  it('a silent replica does not hold up the steps', async () => {
    const r = await runSwarm({}, ['s1r0']);
    expect(r.error).toBeNull();
    expect(r.tokens).toEqual(expected);
  });

  it.each([0, 1, 2])(
    'a replica of stage %i crashes mid-generation: a spare takes over from the agreed inputs, same tokens',
    async (stage) => {
      const who = `s${stage}r1`;
      const spare = `s${stage}spare`;
      const r = await runSwarm({}, [], { who, afterSteps: 4, spare });
      expect(r.error).toBeNull();
      expect(r.tokens).toEqual(expected);
      expect(r.replacements).toEqual([{ stage, left: who, joined: spare, atStep: expect.any(Number) }]);
      // The spare replayed every step so far to rebuild its KV cache, then went on to the end.
      expect(r.computedBy.get(spare)).toBe(TOKENS);
      expect(r.computedBy.get(who)).toBe(4);
      // Its outputs agreed with the others' from the step it joined.
      expect(r.audit.get(spare).disagreed).toBe(0);
      expect(r.audit.get(spare).agreed).toBeGreaterThan(0);
    },
  );

  it('a crash with no spare: the two that remain still form a majority', async () => {
    const r = await runSwarm({}, [], { who: 's2r0', afterSteps: 3, spare: null });
    expect(r.error).toBeNull();
    expect(r.tokens).toEqual(expected);
  });

  it('two liars in one stage that disagree with each other: no majority, no token', async () => {
    const r = await runSwarm({ s1r0: fault('noise', 11), s1r2: fault('noise', 12) });
    expect(r.error?.code).toBe('ERR_NO_QUORUM');
    expect(r.streamed).toEqual([]);
  });
});
