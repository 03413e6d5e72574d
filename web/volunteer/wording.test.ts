import { describe, expect, it } from 'vitest';
import { consentLabel, planShortText, planText } from './wording.js';

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
});
