import { statSync } from 'node:fs';
import { createRequire } from 'node:module';
import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

/** Each onnxruntime-web build's WebAssembly binary in bytes: the pages say before consent what a click downloads. */
function ortWasmBytes(): Record<'wasm' | 'jspi' | 'asyncify', number> {
  const dist = (file: string) => statSync(createRequire(import.meta.url).resolve(`onnxruntime-web/${file}`)).size;
  return {
    wasm: dist('ort-wasm-simd-threaded.wasm'),
    jspi: dist('ort-wasm-simd-threaded.jspi.wasm'),
    asyncify: dist('ort-wasm-simd-threaded.asyncify.wasm'),
  };
}

// Multi-page app: / (landing), /check (the model run in one tab), /volunteer,
// /chat, /dashboard, /embed (the widget's frame) and /consent (the window
// where the widget's consent is given). embed.js is built apart
// (vite.embed.config.ts).
export default defineConfig({
  root: 'web',
  plugins: [react()],
  build: {
    outDir: '../dist',
    emptyOutDir: true,
    target: 'es2022',
    rollupOptions: {
      input: {
        index: 'web/index.html',
        check: 'web/check/index.html',
        volunteer: 'web/volunteer/index.html',
        chat: 'web/chat/index.html',
        embed: 'web/embed/index.html',
        consent: 'web/consent/index.html',
        dashboard: 'web/dashboard/index.html',
      },
    },
  },
  worker: { format: 'es' },
  define: { __ORT_WASM_BYTES__: JSON.stringify(ortWasmBytes()) },
});
