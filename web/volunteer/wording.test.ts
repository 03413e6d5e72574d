import { describe, expect, it } from 'vitest';
import {
  consentLabel,
  deviceLossText,
  downloadText,
  hardwareText,
  planShortText,
  planText,
  refusedText,
  shareText,
  shortStateText,
  stageHeldText,
  stateText,
  usesText,
  weightsText,
} from './wording.js';

describe('what the volunteer page says', () => {
  it('names the hardware on the button: the GPU only when there is a WebGPU adapter', () => {
    expect(consentLabel({ kind: 'gpu', adapter: 'nvidia ampere' })).toBe("Donate this tab's GPU");
    expect(consentLabel({ kind: 'cpu', why: 'no-adapter' })).toBe("Donate this tab's CPU");
    expect(consentLabel({ kind: 'cpu', why: 'asked' })).toBe("Donate this tab's CPU");
    expect(consentLabel({ kind: 'detecting' })).not.toContain('Donate');
  });

  it('says before the click what it will compute on, and why', () => {
    expect(planText({ kind: 'gpu', adapter: 'nvidia ampere' })).toBe("It will compute on this tab's GPU with WebGPU (nvidia ampere).");
    expect(planText({ kind: 'cpu', why: 'no-adapter' })).toContain('no WebGPU adapter');
    expect(planText({ kind: 'cpu', why: 'no-adapter' })).toContain('CPU with WebAssembly');
    expect(planText({ kind: 'cpu', why: 'asked' })).toBe('It will compute on the CPU with WebAssembly, as asked.');
    expect(planText({ kind: 'failed', message: 'no adapter' })).toBe('Cannot start: no adapter');
    expect(planShortText({ kind: 'cpu', why: 'no-adapter' })).toBe('No GPU here: runs on the CPU (WebAssembly)');
    expect(planShortText({ kind: 'gpu', adapter: 'x' })).toBe("Runs on this tab's GPU (WebGPU)");
  });

  it('says after the click what it computes on', () => {
    expect(usesText('webgpu')).toBe('GPU · WebGPU');
    expect(usesText('wasm')).toBe('CPU · WebAssembly');
    expect(hardwareText('webgpu')).toBe('GPU');
    expect(hardwareText('wasm')).toBe('CPU');
  });

  it('says "computing" only while a session runs, "waiting for work" before', () => {
    expect(stateText('ready', 0)).toBe('Ready, waiting for work');
    expect(stateText('ready', 2)).toBe('Computing for the swarm');
    expect(stateText('paused', 0)).toBe('Paused');
    expect(shortStateText('ready', 0)).toBe('Waiting for work');
    expect(shortStateText('ready', 1)).toBe('Computing');
    expect(shortStateText('downloading', 0)).toBe('Loading the model…');
  });

  it('keeps showing the weights while paused: what the cache keeps, or where a download stopped', () => {
    const done = { file: 'stage-0.onnx', loadedBytes: 2_500_000, totalBytes: 2_500_000, fromCache: false };
    expect(weightsText(done, 'ready')).toBe('2.5 MB downloaded');
    expect(weightsText({ ...done, fromCache: true }, 'ready')).toBe('2.5 MB reused from the browser cache');
    expect(weightsText(done, 'paused')).toBe('2.5 MB in the browser cache, kept for resuming');
    expect(weightsText({ ...done, loadedBytes: 1_000_000 }, 'paused')).toBe('download stopped at 1.0 of 2.5 MB');
    expect(weightsText({ ...done, loadedBytes: 1_000_000 }, 'downloading')).toBe('1.0 of 2.5 MB');
  });

  it('tells a lost GPU device in plain words: what happened, what the tab did, what it computes on now', () => {
    const note = { loss: { reason: 'destroyed', message: 'Device was destroyed.' }, at: 0, adapter: 'google swiftshader', losses: 1 };
    const again = deviceLossText({ ...note, backend: 'webgpu', why: 'gpu-again' });
    expect(again).toContain("This tab's GPU device was lost (destroyed: Device was destroyed.); lost once so far.");
    expect(again).toContain('left the swarm at once');
    expect(again).toMatch(/again on the GPU \(WebGPU\)\.$/);
    expect(deviceLossText({ ...note, adapter: null, backend: 'wasm', why: 'no-adapter' })).toMatch(
      /on the CPU \(WebAssembly\): the browser offers no GPU now\.$/,
    );
    const pinned = deviceLossText({ ...note, adapter: null, losses: 3, backend: 'wasm', why: 'repeated-losses' });
    expect(pinned).toContain('lost 3 times so far');
    expect(pinned).toContain('stays there: the GPU was lost 3 times within 10 minutes');
    expect(stateText('recovering', 0)).toBe('The GPU was lost: starting again');
    expect(shortStateText('recovering', 0)).toBe('GPU lost: starting again…');
  });
});

describe('the Stage card', () => {
  it('says the stage shown is the one held before while the connection is lost (before, shown as held)', () => {
    expect(stageHeldText('ready', 1, 'austen-2m')).toBe('austen-2m');
    expect(stageHeldText('connecting', 1, 'austen-2m')).toBe(
      'austen-2m: held before the connection was lost; assigned again on reconnecting',
    );
    expect(stageHeldText('connecting', null, null)).toBe('not assigned yet');
    // Left or evicted: released, no longer held.
    expect(stageHeldText('left', 0, 'austen-2m')).toBe('austen-2m, stage 0: released when you left');
    expect(stageHeldText('evicted', 2, 'austen-2m')).toBe('austen-2m, stage 2: released when the swarm evicted this tab');
  });
});

describe('the Reputation card', () => {
  it('tells the late frames an honest swarm sends from the bad ones (before, all were "bad frames refused")', () => {
    expect(refusedText({})).toBe('from the coordinator’s votes');
    expect(refusedText({ ERR_STALE_STEP: 3, ERR_FRAME_UNWANTED: 1 })).toBe('4 late frames ignored');
    expect(refusedText({ ERR_FRAME_MAGIC: 1 })).toBe('1 bad frame refused');
    expect(refusedText({ ERR_FRAME_CHECKSUM: 2, ERR_PEER_CHURN: 1, ERR_STALE_STEP: 1 })).toBe('3 bad frames refused, 1 late frame ignored');
  });
});

describe('the download said before consent', () => {
  it('gives the runtime and the weights in megabytes, the most a part takes where parts differ (before, "a few megabytes")', () => {
    const one = { runtimeBytes: 14_239_897, weights: { least: 4_376_640, most: 4_376_640 } };
    expect(downloadText(one)).toBe(
      "about 18.6 MB: onnxruntime's WebAssembly runtime (14.2 MB) and its part of the model's weights (4.4 MB)",
    );
    expect(downloadText({ ...one, weights: { least: 1_000_000, most: 2_500_000 } })).toBe(
      "up to 16.7 MB: onnxruntime's WebAssembly runtime (14.2 MB) and its part of the model's weights (1.0 to 2.5 MB, by the part it is given)",
    );
    expect(downloadText({ ...one, runtimeBytes: null })).toBe(
      "onnxruntime's WebAssembly runtime and its part of the model's weights (4.4 MB)",
    );
    expect(downloadText(null)).toBe("onnxruntime's WebAssembly runtime and its part of the model's weights");
  });
});

describe('the share', () => {
  it('says the most of its time the tab gives, or full speed', () => {
    expect(shareText(0.5)).toBe('at most 50 % of the time');
    expect(shareText(0.05)).toBe('at most 5 % of the time');
    expect(shareText(1)).toBe('at full speed');
  });
});
