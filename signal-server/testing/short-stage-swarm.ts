// A swarm with a stage short of volunteers, over the real protocol, for the fallback's hand-back tests
// (fallback-hand-back.test.ts, hand-back-attacks.test.ts): a real server of 2 stages × r = 2 with FALLBACK=stage
// on port 0, Node volunteers that compute with onnxruntime and speak Socket.IO, the reference runner's tokens.
import { afterAll, expect } from 'vitest';
import { GREEDY, type SamplingParams } from '../../shared/model/sampling.js';
import type { FaultBehaviour } from '../../shared/swarm/faults.js';
import { createLogger } from '../log.js';
import { ensureStages } from '../models/model-folder.js';
import { ReferenceRunner } from '../reference/reference-runner.js';
import { type CompletionBody, type HttpSwarm, httpSwarm, MODEL, PROMPT } from './http-swarm.js';
import type { NodeVolunteer } from './node-volunteer.js';

/** How long a test waits for volunteers to load and prove their stages: generous, for 2 busy cores. */
export const READY_MS = 90_000;

/** Stages the server computed, per token. */
export function serverStages(body: CompletionBody): number[][] {
  return body.webswarm?.votes.map((v) => v.server_stages) ?? [];
}

/**
 * Each step of a volunteer waits `slow.ms` (at first `ms`) first, then `change` (honest where absent) gives its
 * output: the request outlasts the volunteers' joins and proofs while a test waits for them (with room to spare on
 * busy cores), and ends quickly once the test sets `slow.ms` to 0.
 */
export function slowed(ms = 80, change?: (d: Float32Array) => Float32Array): { fault: FaultBehaviour; slow: { ms: number } } {
  const slow = { ms };
  return {
    slow,
    fault: {
      output: (_step, d) => (change === undefined ? d : change(d)),
      get delayMs() {
        return slow.ms;
      },
    },
  };
}

/** A proof held until `release` (NodeVolunteerOptions.holdProof): the volunteer becomes ready when the test says. */
export function heldProof(): { readonly holdProof: () => Promise<void>; readonly release: () => void } {
  let release = () => {};
  const proved = new Promise<void>((resolve) => {
    release = resolve;
  });
  return { holdProof: () => proved, release };
}

/** Waits until the volunteers of the stage other than `short` computed `steps` steps each. */
export async function requestRan(vs: readonly NodeVolunteer[], short: number, steps: number): Promise<void> {
  const others = vs.filter((v) => v.stage !== short);
  await expect.poll(() => Math.min(...others.map((v) => v.steps)), { timeout: READY_MS }).toBeGreaterThanOrEqual(steps);
}

export interface ShortStageSwarm extends HttpSwarm {
  /** The reference runner's tokens of PROMPT on the 2-stage cut (greedy unless `sampling` says). */
  referenceTokens(n: number, sampling?: SamplingParams): Promise<number[]>;
  /**
   * A server of 2 stages × r = 2 with FALLBACK=stage and 3 ready volunteers of 3 clients (127.0.0.30–32), each
   * computing as `fault` says: one stage has one volunteer (`short`), so the server computes it for a request.
   */
  start2x2(fault: FaultBehaviour): Promise<{
    url: string;
    coordinator: NonNullable<Awaited<ReturnType<HttpSwarm['start']>>['server']['coordinator']>;
    vs: NodeVolunteer[];
    short: number;
    /** The server's log messages so far. */
    messages: () => string[];
  }>;
}

export function shortStageSwarm(name: string): ShortStageSwarm {
  const swarm = httpSwarm(name);
  let reference: ReferenceRunner | null = null;
  afterAll(async () => {
    await reference?.close();
  });
  return {
    ...swarm,
    async referenceTokens(n, sampling = GREEDY) {
      if (reference === null) {
        const { dir } = await ensureStages(MODEL, { stages: 2 }, swarm.stageCache());
        reference = await ReferenceRunner.fromStageDir(dir);
      }
      return (await reference.generateIds(reference.tokenizer.encode(PROMPT), n, sampling)).tokens;
    },
    async start2x2(fault) {
      const lines: string[] = [];
      const logger = createLogger('info', { write: (chunk: string) => lines.push(...chunk.split('\n').filter((l) => l.length > 0)) });
      const { server, url } = await swarm.start(2, 2, { stepTimeoutMs: 20_000, fallback: 'stage', logger });
      const coordinator = server.coordinator;
      if (coordinator === null) throw new Error('no coordinator');
      const vs: NodeVolunteer[] = [];
      for (let i = 0; i < 3; i++) {
        const v = swarm.volunteer(url, `127.0.0.${30 + i}`, { fault });
        vs.push(v);
        await expect.poll(() => v.stage, { timeout: READY_MS }).not.toBeNull();
      }
      await expect.poll(() => swarm.readyCount(url), { timeout: READY_MS }).toBe(3);
      const short = [0, 1].find((s) => vs.filter((v) => v.stage === s).length < 2) as number;
      const messages = () => lines.map((l) => (JSON.parse(l) as { msg?: string }).msg ?? '');
      return { url, coordinator, vs, short, messages };
    },
  };
}
