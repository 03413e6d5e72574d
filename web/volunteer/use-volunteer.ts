import { useCallback, useEffect, useRef, useState } from 'react';
import type { FaultKind } from '../../shared/swarm/faults.js';
import { parseCaptureParam } from '../compute/capture-plan.js';
import type { SelectedPair } from '../net/peers.js';
import { connectSwarm } from '../net/socket.js';
import { chooseBackend } from './backend-plan.js';
import { type ReplicaStatus, VolunteerReplica } from './replica.js';
import { StepTrace, type TraceEntry } from './step-trace.js';
import { chooseDataPath, type DataPath, DEFAULT_DATA_PATH } from './worker-path.js';

declare global {
  interface Window {
    /** The replica's latest status: lets scripts (and tests) watch this page. */
    webswarmVolunteer?: ReplicaStatus;
    /** Each open data channel's selected candidate pair (local type relay = through TURN). */
    webswarmIceStats?: () => Promise<{ peer: string; pair: SelectedPair | null }[]>;
    /** Data-channel messages this page sent and received so far (the redundancy bench counts them per token). */
    webswarmChannelMessages?: () => Promise<{ sent: number; received: number }>;
    /** Stamps of each step's path (?trace=1 only): the bench's breakdown of a token's time. */
    webswarmTrace?: readonly TraceEntry[];
    /** What inbound frames hold on the page's thread now (main-thread path; null on the worker path, where the worker has its own). */
    webswarmHeld?: () => ReturnType<VolunteerReplica['held']>;
    /** The page's mesh: peers with a connection, connections made and signalling messages sent so far (null before the welcome). */
    webswarmLinks?: () => ReturnType<VolunteerReplica['links']>;
  }
}

export interface VolunteerSettings {
  /** "wasm", "webgpu", or null to use WebGPU where the browser has an adapter. */
  readonly backend: string | null;
  readonly fault: FaultKind | null;
  /** The most of wall time to compute, in (0, 1]. */
  readonly share: number;
  /** Pause while the page is hidden (another tab in front, the window minimised). */
  readonly autoPause: boolean;
  /**
   * The model this volunteer came for (?model=, the widget's data-model), or null for whatever the swarm serves:
   * checked against the swarm's before consent (useBackendPlan).
   */
  readonly model: string | null;
  /** False (?batch=off): each session's step is its own runtime call, for comparisons; default true. */
  readonly batching?: boolean;
  /** Stamp each step's path (?trace=1, for the bench); off by default. */
  readonly trace?: boolean;
  /** Where a step's data path runs (?datapath=main|worker); DEFAULT_DATA_PATH where the browser allows, when absent. */
  readonly dataPath?: DataPath;
  /** ?capture= as given (capture-plan.ts parseCaptureParam); absent or null: no graph capture. */
  readonly capture?: string | null;
}

/**
 * The counters are redrawn at most this often: a render per step is layout, paint and a compositor frame per token
 * in every tab, on the cores the swarm computes on (measured: bench/redundancy.ts), and a render per refused frame
 * would let a peer sending junk spend this tab's CPU. Once a second is often enough for a person watching.
 */
const COUNTER_RENDER_MS = 1_000;

/**
 * Fields that only count on: their changes wait for the next redraw. The score is one: the coordinator sends it
 * after every vote, one a step to each replica; so are the refusals by code (a flood of junk frames counts there too).
 */
const COUNTERS: ReadonlySet<keyof ReplicaStatus> = new Set(['stepsComputed', 'framesRejected', 'framesRejectedBy', 'score']);

/** True when `b` differs from `a` in its counters alone. */
function onlyCounterMoved(a: ReplicaStatus, b: ReplicaStatus): boolean {
  for (const k of Object.keys(b) as (keyof ReplicaStatus)[]) if (!COUNTERS.has(k) && a[k] !== b[k]) return false;
  return true;
}

/**
 * Hands each status to `show`, except that a status that only moves a counter
 * (another step, another refused frame) waits (the latest one) until
 * COUNTER_RENDER_MS after the last shown:
 * window.webswarmVolunteer, which scripts and tests read, is always the latest.
 */
function throttledStatus(show: (s: ReplicaStatus) => void): (s: ReplicaStatus) => void {
  let shown: ReplicaStatus | null = null;
  let shownAt = 0;
  let timer: ReturnType<typeof setTimeout> | null = null;
  const flush = () => {
    timer = null;
    const s = window.webswarmVolunteer;
    if (s === undefined || s === shown) return;
    shown = s;
    shownAt = performance.now();
    show(s);
  };
  return (s) => {
    window.webswarmVolunteer = s;
    if (shown !== null && onlyCounterMoved(shown, s)) {
      timer ??= setTimeout(flush, Math.max(0, shownAt + COUNTER_RENDER_MS - performance.now()));
      return;
    }
    if (timer !== null) clearTimeout(timer);
    flush();
  };
}

/** Runs a volunteer replica while `active` (after consent, use-consent.ts): its status, and pause / resume / leave. */
export function useVolunteer(active: boolean, settings: VolunteerSettings) {
  const [status, setStatus] = useState<ReplicaStatus | null>(null);
  const [failure, setFailure] = useState<string | null>(null);
  const replica = useRef<VolunteerReplica | null>(null);
  const {
    backend,
    fault,
    share,
    autoPause,
    trace,
    batching = true,
    dataPath = chooseDataPath(null, DEFAULT_DATA_PATH),
    capture = null,
  } = settings;

  useEffect(() => {
    if (!active) return;
    let live = true;
    let captureSessions: number | null | undefined;
    // The model was checked against the swarm's before consent (useBackendPlan: the button waits for it).
    Promise.resolve()
      .then(() => {
        captureSessions = parseCaptureParam(capture);
        return chooseBackend(backend);
      })
      .then(({ backend: b, adapter }) => {
        if (!live) return;
        const stamps = trace === true ? new StepTrace() : null;
        if (stamps !== null) window.webswarmTrace = stamps.entries;
        replica.current = new VolunteerReplica(connectSwarm('volunteer'), b, adapter, throttledStatus(setStatus), {
          fault,
          share,
          trace: stamps,
          batching,
          dataPath,
          captureSessions,
        });
        const r = replica.current;
        window.webswarmIceStats = () => r.iceStats();
        window.webswarmHeld = () => r.held();
        window.webswarmLinks = () => r.links();
        window.webswarmChannelMessages = () => r.channelMessages();
        if (autoPause && document.visibilityState === 'hidden') r.pause();
      })
      .catch((e: unknown) => setFailure((e as Error).message));
    return () => {
      live = false;
      replica.current?.leave();
      replica.current = null;
    };
  }, [active, backend, fault, share, autoPause, trace, batching, dataPath, capture]);

  // Auto-pause: only a pause that the page's hiding caused is undone when it shows again.
  const pausedByHiding = useRef(false);
  useEffect(() => {
    if (!active || !autoPause) return;
    const onVisibility = () => {
      const r = replica.current;
      if (r === null) return;
      if (document.visibilityState === 'hidden' && window.webswarmVolunteer?.state !== 'paused') {
        pausedByHiding.current = true;
        r.pause();
      } else if (document.visibilityState === 'visible' && pausedByHiding.current) {
        pausedByHiding.current = false;
        r.resume();
      }
    };
    document.addEventListener('visibilitychange', onVisibility);
    return () => document.removeEventListener('visibilitychange', onVisibility);
  }, [active, autoPause]);

  const pause = useCallback(() => {
    pausedByHiding.current = false;
    replica.current?.pause();
  }, []);
  const resume = useCallback(() => replica.current?.resume(), []);
  const leave = useCallback(() => replica.current?.leave(), []);
  return { status, failure, pause, resume, leave };
}

/** Share of outputs that agreed with the majority, or null before any vote. */
export function agreementRate(s: ReplicaStatus): number | null {
  if (s.score === null || s.score.agreed + s.score.disagreed === 0) return null;
  return s.score.agreed / (s.score.agreed + s.score.disagreed);
}
