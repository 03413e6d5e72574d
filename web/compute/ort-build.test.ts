// Which onnxruntime-web build a worker loads: the plain WASM build for WASM;
// for WebGPU the JSPI build where the engine has JSPI's two functions, else
// the asyncify build. (Both builds load and agree bit for bit in Chromium:
// e2e/stage-in-browser.spec.ts.)
import { describe, expect, it } from 'vitest';
import { ortBuildFor, webgpuBuild } from './ort-build.js';

const fn = () => {};

describe('the WebGPU build for an engine', () => {
  it('is JSPI only where WebAssembly has both Suspending and promising as functions', () => {
    expect(webgpuBuild({ Suspending: fn, promising: fn })).toBe('jspi');
    expect(webgpuBuild({})).toBe('asyncify');
    expect(webgpuBuild({ Suspending: fn })).toBe('asyncify');
    expect(webgpuBuild({ promising: fn })).toBe('asyncify');
    // Objects named so but not callable (an engine's half-done or shimmed API) do not count.
    expect(webgpuBuild({ Suspending: {}, promising: 'yes' })).toBe('asyncify');
  });

  it("follows this engine's own WebAssembly by default, and WASM always loads the plain build", () => {
    const w = WebAssembly as unknown as { Suspending?: unknown; promising?: unknown };
    const jspi = typeof w.Suspending === 'function' && typeof w.promising === 'function';
    expect(webgpuBuild()).toBe(jspi ? 'jspi' : 'asyncify');
    expect(ortBuildFor('webgpu')).toBe(webgpuBuild());
    expect(ortBuildFor('wasm')).toBe('wasm');
  });
});
