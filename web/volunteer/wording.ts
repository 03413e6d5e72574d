/**
 * What the volunteer page and the widget's frame say, as pure functions: what
 * the tab will use before the click, what it uses after, and whether it is
 * computing or only waiting for work.
 */
import type { Backend } from '../compute/messages.js';
import type { Progress } from '../compute/stage-loader.js';
import type { BackendPlan, DownloadPlan } from './backend-plan.js';
import { LOSS_WINDOW_MS, LOSSES_BEFORE_WASM } from './device-loss.js';
import type { CaptureState, DeviceLossNote, ReplicaState } from './replica.js';

/** Bytes as the pages show them: megabytes, one decimal. */
const mb = (bytes: number) => (bytes / 1e6).toFixed(1);

/**
 * Before the click: what the tab downloads the first time (then kept in the browser's cache): onnxruntime's
 * WebAssembly runtime and its part of the model's weights, in megabytes where the page knows them (plan.download).
 */
export function downloadText(d: DownloadPlan | null | undefined): string {
  const runtime = "onnxruntime's WebAssembly runtime";
  if (d === null || d === undefined) return `${runtime} and its part of the model's weights`;
  const { least, most } = d.weights;
  const weights = `its part of the model's weights (${least === most ? `${mb(most)} MB` : `${mb(least)} to ${mb(most)} MB, by the part it is given`})`;
  if (d.runtimeBytes === null) return `${runtime} and ${weights}`;
  return `${least === most ? 'about' : 'up to'} ${mb(d.runtimeBytes + most)} MB: ${runtime} (${mb(d.runtimeBytes)} MB) and ${weights}`;
}

/** The consent button: names the hardware the tab will really use. */
export function consentLabel(plan: BackendPlan): string {
  switch (plan.kind) {
    case 'detecting':
      return 'Checking for a GPU…';
    case 'gpu':
      return "Donate this tab's GPU";
    case 'cpu':
      return "Donate this tab's CPU";
    case 'failed':
      return 'Cannot start';
    default:
      return plan satisfies never;
  }
}

/** Before the click: what the tab will compute on, and why. */
export function planText(plan: BackendPlan): string {
  switch (plan.kind) {
    case 'detecting':
      return 'Checking whether this browser offers a GPU (WebGPU)…';
    case 'gpu':
      return `It will compute on this tab's GPU with WebGPU (${plan.adapter}).`;
    case 'cpu':
      return plan.why === 'asked'
        ? 'It will compute on the CPU with WebAssembly, as asked.'
        : 'This browser offers no GPU (no WebGPU adapter), so it will compute on the CPU with WebAssembly.';
    case 'failed':
      return `Cannot start: ${plan.message}`;
    default:
      return plan satisfies never;
  }
}

/** planText for the widget's small frame. */
export function planShortText(plan: BackendPlan): string {
  switch (plan.kind) {
    case 'detecting':
      return 'Checking for a GPU…';
    case 'gpu':
      return "Runs on this tab's GPU (WebGPU)";
    case 'cpu':
      return plan.why === 'asked' ? 'Runs on the CPU (WebAssembly)' : 'No GPU here: runs on the CPU (WebAssembly)';
    case 'failed':
      return `Cannot start: ${plan.message}`;
    default:
      return plan satisfies never;
  }
}

/** After the click: what the tab computes on. */
export function usesText(backend: Backend): string {
  return backend === 'webgpu' ? 'GPU · WebGPU' : 'CPU · WebAssembly';
}

/** The time the tab gives (?share=, data-share): what the visitor was promised, kept in sight after consent. */
export function shareText(share: number): string {
  return share < 1 ? `at most ${Math.round(share * 100)} % of the time` : 'at full speed';
}

/** usesText for the widget's one line: the hardware alone. */
export function hardwareText(backend: Backend): 'GPU' | 'CPU' {
  return backend === 'webgpu' ? 'GPU' : 'CPU';
}

const STATE_TEXT: Record<Exclude<ReplicaState, 'ready'>, string> = {
  connecting: 'Connecting to the swarm…',
  waiting: 'Waiting for a stage',
  downloading: 'Downloading weights',
  loading: 'Loading the model',
  paused: 'Paused',
  left: 'Left the swarm',
  error: 'Stopped by an error',
  evicted: 'Evicted',
  unfit: 'This device cannot hold a part of this model',
  recovering: 'The GPU was lost: starting again',
};

/** The volunteer page's badge: "computing" only while a session runs on this tab. */
export function stateText(state: ReplicaState, openSessions: number): string {
  if (state !== 'ready') return STATE_TEXT[state];
  return openSessions > 0 ? 'Computing for the swarm' : 'Ready, waiting for work';
}

const SHORT_TEXT: Record<Exclude<ReplicaState, 'ready'>, string> = {
  connecting: 'Connecting…',
  waiting: 'Waiting for a stage',
  downloading: 'Loading the model…',
  loading: 'Loading the model…',
  paused: 'Paused',
  left: 'Left the swarm',
  error: 'Stopped by an error',
  evicted: 'Evicted',
  unfit: 'Too little memory for this model',
  recovering: 'GPU lost: starting again…',
};

/**
 * The Stage card's line under the stage: the model, or, while the connection is lost, that the stage shown is the one
 * held before (the server assigns one again on reconnecting, perhaps another).
 */
export function stageHeldText(state: ReplicaState, stage: number | null, modelId: string | null): string {
  if (modelId === null) return 'not assigned yet';
  // Out of the swarm for good: the stage shown is the one it held, no longer (before, shown as held after Leave).
  if ((state === 'left' || state === 'evicted') && stage !== null)
    return `${modelId}, stage ${stage}: released when ${state === 'left' ? 'you left' : 'the swarm evicted this tab'}`;
  return state === 'connecting' && stage !== null
    ? `${modelId}: held before the connection was lost; assigned again on reconnecting`
    : modelId;
}

/** The widget frame's one-line state. */
export function shortStateText(state: ReplicaState, openSessions: number): string {
  if (state !== 'ready') return SHORT_TEXT[state];
  return openSessions > 0 ? 'Computing' : 'Waiting for work';
}

/** The Weights card: the download, its reuse from the cache, and while paused what the cache keeps. */
export function weightsText(p: Progress, state: ReplicaState): string {
  if (p.loadedBytes < p.totalBytes)
    return state === 'paused'
      ? `download stopped at ${mb(p.loadedBytes)} of ${mb(p.totalBytes)} MB`
      : `${mb(p.loadedBytes)} of ${mb(p.totalBytes)} MB`;
  if (state === 'paused') return `${mb(p.totalBytes)} MB in the browser cache, kept for resuming`;
  return `${mb(p.totalBytes)} MB ${p.fromCache ? 'reused from the browser cache' : 'downloaded'}`;
}

/** The last loss of the tab's GPU device in plain words: what happened, what the tab did, and what it computes on now. */
export function deviceLossText(note: DeviceLossNote): string {
  const times = note.losses === 1 ? 'once' : `${note.losses} times`;
  const what = `This tab's GPU device was lost (${note.loss.reason}${note.loss.message === '' ? '' : `: ${note.loss.message}`}); lost ${times} so far.`;
  const did = 'The tab left the swarm at once (its steps went to other volunteers) and loaded its part of the model again';
  switch (note.why) {
    case 'gpu-again':
      return `${what} ${did} on the GPU (WebGPU).`;
    case 'no-adapter':
      return `${what} ${did} on the CPU (WebAssembly): the browser offers no GPU now.`;
    case 'repeated-losses':
      return `${what} ${did} on the CPU (WebAssembly), and stays there: the GPU was lost ${LOSSES_BEFORE_WASM} times within ${LOSS_WINDOW_MS / 60_000} minutes.`;
    default:
      return note.why satisfies never;
  }
}

/** Graph capture as the status card says it: how many sessions the stage holds with it, or why it runs without. */
export function captureText(c: CaptureState): string {
  return c.on ? `graph capture: up to ${c.sessions} session${c.sessions === 1 ? '' : 's'} at once` : `graph capture off: ${c.why}`;
}

/**
 * Refusal codes an honest swarm makes too: a frame for a step already taken or rolled back (a slower replica's copy,
 * a path since replaced: ERR_STALE_STEP), or for a session this tab no longer holds (closed, moved: ERR_FRAME_UNWANTED).
 */
const LATE_CODES: ReadonlySet<string> = new Set(['ERR_STALE_STEP', 'ERR_FRAME_UNWANTED']);

/**
 * The Reputation card's line: the frames and signals this tab refused, by reason code (ReplicaStatus.framesRejectedBy),
 * the late ones of an honest swarm apart from the malformed, over-budget or hostile ones; else where the figure comes from.
 */
export function refusedText(by: Readonly<Record<string, number>>): string {
  let late = 0;
  let bad = 0;
  for (const [code, n] of Object.entries(by)) {
    if (LATE_CODES.has(code)) late += n;
    else bad += n;
  }
  const parts = [
    bad > 0 ? `${bad} bad frame${bad === 1 ? '' : 's'} refused` : null,
    late > 0 ? `${late} late frame${late === 1 ? '' : 's'} ignored` : null,
  ].filter((p) => p !== null);
  return parts.length === 0 ? 'from the coordinator’s votes' : parts.join(', ');
}
