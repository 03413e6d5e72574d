/**
 * Where a token's time goes along its path in a swarm of S stages × r = 1:
 * the tabs' stamps (web/volunteer/step-trace.ts, ?trace=1) and the moment the
 * coordinator accepted each token, all on this machine's wall clock, split
 * into the legs of one decode step: the socket to stage 0, each stage's
 * bookkeeping before and after its compute, the worker's round trip, the
 * compute itself, each data-channel hop, and the way back to the coordinator.
 */
import { MESH_AHEAD } from '../shared/swarm/mesh-loop.js';
import type { TraceEntry } from '../web/volunteer/step-trace.js';
import { median } from './table.js';

export interface StageTrace {
  readonly stage: number;
  readonly entries: readonly TraceEntry[];
}

/** One run: every tab's stamps and, per step, when its token was accepted (epoch ms). */
export interface TracedRun {
  readonly tabs: readonly StageTrace[];
  readonly tokenAt: ReadonlyMap<number, number>;
}

function index(entries: readonly TraceEntry[]): Map<string, TraceEntry> {
  const m = new Map<string, TraceEntry>();
  // The first stamp of each (step, phase): a replayed step would stamp again.
  for (const e of entries) if (!m.has(`${e.step}:${e.phase}`)) m.set(`${e.step}:${e.phase}`, e);
  return m;
}

/**
 * Rows [leg, mean ms, share of the step's mean, median ms] over the decode
 * steps of all runs: the means add up to the step's (the legs tile it), the
 * medians show what is typical when a few slow steps pull a mean.
 */
export function stepPathRows(runs: readonly TracedRun[], stages: number): string[][] {
  const legs = new Map<string, number[]>();
  const add = (leg: string, ms: number | undefined) => {
    if (ms === undefined || !Number.isFinite(ms)) return;
    legs.set(leg, [...(legs.get(leg) ?? []), ms]);
  };
  const order: string[] = [];
  const leg = (name: string) => {
    if (!order.includes(name)) order.push(name);
    return name;
  };
  for (const run of runs) {
    const byStage = [...run.tabs].sort((a, b) => a.stage - b.stage).map((t) => index(t.entries));
    if (byStage.length !== stages) throw new Error(`a trace per stage expected, got ${byStage.length}`);
    const at = (s: number, step: number, phase: string) => byStage[s]?.get(`${step}:${phase}`);
    // Step 0 is the prompt; the last step has no next input.
    for (let k = 1; at(0, k + 1, 'input') !== undefined; k++) {
      const start = at(0, k, 'input')?.t;
      const next = at(0, k + 1, 'input')?.t;
      if (start === undefined || next === undefined) continue;
      for (let s = 0; s < stages; s++) {
        const arrive = at(s, k, s === 0 ? 'input' : 'recv')?.t;
        const runStart = at(s, k, 'run-start')?.t;
        const runEnd = at(s, k, 'run-end');
        const sent = at(s, k, 'sent')?.t;
        if (arrive === undefined || runStart === undefined || runEnd === undefined || sent === undefined) continue;
        const runMs = runEnd.runMs ?? 0;
        add(leg(`stage ${s}: arrival → worker (frame assembly, checks, vote, input fingerprint)`), runStart - arrive);
        add(leg(`stage ${s}: worker round trip (postMessage both ways, outside session.run)`), runEnd.t - runStart - runMs);
        add(leg(`stage ${s}: session.run in the worker (compute)`), runMs);
        add(leg(`stage ${s}: output → sent (fingerprint, digest, frame encode)`), sent - runEnd.t);
        const recv = s + 1 < stages ? at(s + 1, k, 'recv')?.t : undefined;
        if (recv !== undefined) add(leg(`hop ${s} → ${s + 1}: data channel`), recv - sent);
      }
      const lastSent = at(stages - 1, k, 'sent')?.t;
      const token = run.tokenAt.get(k);
      if (lastSent !== undefined && token !== undefined) {
        add(leg(`stage ${stages - 1} → coordinator: socket, logits check, vote, sampling`), token - lastSent);
        add(leg('coordinator → stage 0: the next step:input over the socket'), next - token);
      }
      add(leg('whole step (stage 0 input to the next)'), next - start);
    }
  }
  const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const total = mean(legs.get('whole step (stage 0 input to the next)') ?? []);
  return order.map((name) => {
    const xs = legs.get(name) ?? [];
    return [name, mean(xs).toFixed(3), `${((100 * mean(xs)) / total).toFixed(0)} %`, median(xs).toFixed(3)];
  });
}

/**
 * The same legs with the mesh loop on (the default): a step runs from stage
 * 0's mesh token arriving (its `recv`) to the next one's, and tiles into each
 * stage's arrival → compute → sent and the hops between, the last one from
 * the last stage back to stage 0. The last stage stamps `sent` for step k+1
 * when it sends that step's token (a frame, at the end of step k) before it
 * stamps step k+1's logits; the first stamp is the one kept, so its step k
 * ends at its (k+1, sent). `floorOf(from, to)` gives a hop's floor (one-way,
 * bench/hop-floor.ts), shown beside it.
 */
export function meshStepRows(runs: readonly TracedRun[], stages: number, floorOf: (from: number, to: number) => number): string[][] {
  const legs = new Map<string, number[]>();
  const order: string[] = [];
  const floors = new Map<string, number>();
  const add = (name: string, ms: number | undefined, floor?: number) => {
    if (ms === undefined || !Number.isFinite(ms)) return;
    if (!order.includes(name)) order.push(name);
    if (floor !== undefined) floors.set(name, floor);
    legs.set(name, [...(legs.get(name) ?? []), ms]);
  };
  const whole = 'whole step (stage 0 mesh token to the next)';
  for (const run of runs) {
    const byStage = [...run.tabs].sort((a, b) => a.stage - b.stage).map((t) => index(t.entries));
    if (byStage.length !== stages) throw new Error(`a trace per stage expected, got ${byStage.length}`);
    const at = (s: number, step: number, phase: string) => byStage[s]?.get(`${step}:${phase}`)?.t;
    // Step 1 is the first the mesh loop feeds.
    for (let k = 1; at(0, k + 1, 'recv') !== undefined; k++) {
      const start = at(0, k, 'recv');
      const next = at(0, k + 1, 'recv');
      if (start === undefined || next === undefined) continue;
      for (let s = 0; s < stages; s++) {
        const last = s === stages - 1;
        const arrive = at(s, k, 'recv');
        const runStart = at(s, k, 'run-start');
        const runEnd = byStage[s]?.get(`${k}:run-end`);
        const sent = at(s, last ? k + 1 : k, 'sent');
        if (arrive === undefined || runStart === undefined || runEnd === undefined || sent === undefined) continue;
        if (s === 0) {
          // Stage 0 computes step k only once the coordinator's token for step k − MESH_AHEAD came (its page stamps
          // `input`): the loop runs at most MESH_AHEAD steps past what the coordinator verified.
          const verified = at(0, k - MESH_AHEAD, 'input');
          const wait = verified === undefined ? 0 : Math.min(Math.max(0, verified - arrive), runStart - arrive);
          add(`stage 0: waiting for the coordinator's token of step k − ${MESH_AHEAD} (MESH_AHEAD)`, wait);
          add('stage 0: arrival → compute otherwise (checks, vote, fingerprint)', runStart - arrive - wait);
        } else add(`stage ${s}: arrival → compute (checks, vote, fingerprint)`, runStart - arrive);
        add(`stage ${s}: session.run (compute)`, runEnd.runMs ?? 0);
        add(`stage ${s}: around session.run (executor, outside the run)`, runEnd.t - runStart - (runEnd.runMs ?? 0));
        add(`stage ${s}: compute → sent (${last ? 'sampling, the token frame' : 'fingerprint, frame encode'})`, sent - runEnd.t);
        const to = last ? 0 : s + 1;
        const recv = at(to, last ? k + 1 : k, 'recv');
        if (recv !== undefined) add(`hop ${s} → ${to}: data channel`, recv - sent, floorOf(s, to));
      }
      add(whole, next - start);
    }
  }
  const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const total = mean(legs.get(whole) ?? []);
  return order.map((name) => {
    const xs = legs.get(name) ?? [];
    const floor = floors.get(name);
    return [
      name,
      mean(xs).toFixed(3),
      `${((100 * mean(xs)) / total).toFixed(0)} %`,
      median(xs).toFixed(3),
      floor === undefined ? '—' : floor.toFixed(3),
    ];
  });
}

/**
 * The coordinator beside the mesh loop (these legs overlap the loop's, they
 * do not add up to the step): from the last stage's compute end of step k to
 * the coordinator accepting step k's token (logits and digests over the
 * socket, the vote, the checks, sampling), then to stage 0's page having the
 * coordinator's token for step k + 1 (the socket back); and the time between
 * two tokens the coordinator accepts, which bounds the loop once it runs
 * MESH_AHEAD steps ahead.
 */
export function coordinatorRows(runs: readonly TracedRun[], stages: number): string[][] {
  const legs: [string, number[]][] = [
    [`last stage's compute end of step k → the coordinator accepts step k`, []],
    [`  of which: compute end → its page hands the logits to the socket`, []],
    [`  of which: the page's socket → the coordinator accepts (socket, vote, checks, sampling)`, []],
    ['the coordinator accepts step k → stage 0 has its token for step k + 1 (socket)', []],
    ['between two tokens the coordinator accepts', []],
  ];
  for (const run of runs) {
    const byStage = [...run.tabs].sort((a, b) => a.stage - b.stage).map((t) => index(t.entries));
    for (const [k, accepted] of run.tokenAt) {
      const end = byStage[stages - 1]?.get(`${k}:run-end`)?.t;
      const input = byStage[0]?.get(`${k + 1}:input`)?.t;
      const before = run.tokenAt.get(k - 1);
      const handed = byStage[stages - 1]?.get(`${k}:logits`)?.t;
      if (end !== undefined && k > 0) legs[0]?.[1].push(accepted - end);
      if (end !== undefined && handed !== undefined && k > 0) legs[1]?.[1].push(handed - end);
      if (handed !== undefined && k > 0) legs[2]?.[1].push(accepted - handed);
      if (input !== undefined && k > 0) legs[3]?.[1].push(input - accepted);
      if (before !== undefined && k > 1) legs[4]?.[1].push(accepted - before);
    }
  }
  const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  return legs.map(([name, xs]) => [name, mean(xs).toFixed(3), median(xs).toFixed(3)]);
}
