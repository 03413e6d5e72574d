// Which onnxruntime-web build a backend loads here, and how large its
// WebAssembly binary is: a module of its own, light enough for the pages to
// say before consent what a click will download (ort-web.ts loads the build).
import type { Backend } from './messages.js';

/** The onnxruntime-web build a worker runs: the plain WASM build, or a WebGPU build on JSPI or on asyncify. */
export type OrtBuild = 'wasm' | 'jspi' | 'asyncify';

/** The WebGPU build for this engine's WebAssembly (`wasm`: the global one by default): JSPI where it has both functions. */
export function webgpuBuild(wasm: object = WebAssembly): Exclude<OrtBuild, 'wasm'> {
  const w = wasm as { Suspending?: unknown; promising?: unknown };
  return typeof w.Suspending === 'function' && typeof w.promising === 'function' ? 'jspi' : 'asyncify';
}

/** The build a backend runs on here. */
export function ortBuildFor(backend: Backend): OrtBuild {
  return backend === 'webgpu' ? webgpuBuild() : 'wasm';
}

/** Each build's WebAssembly binary in bytes, written into the pages by Vite (vite.config.ts, `define`). */
declare const __ORT_WASM_BYTES__: Readonly<Record<OrtBuild, number>> | undefined;

/** The bytes of `build`'s WebAssembly binary; null where the page was built without the figures (unit tests). */
export function runtimeBytes(build: OrtBuild): number | null {
  return typeof __ORT_WASM_BYTES__ === 'undefined' ? null : __ORT_WASM_BYTES__[build];
}
