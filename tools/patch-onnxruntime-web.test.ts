// The graph-capture mend of onnxruntime-web (tools/patch-onnxruntime-web.ts):
// on the installed files (npm's postinstall ran it), and on texts that have
// the code it mends, already have the mend, or have the code in a form it
// does not know. That the mend works is e2e/graph-capture.spec.ts's to show.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MARK, patchDist, patchText } from './patch-onnxruntime-web.js';

const DIST = resolve('node_modules/onnxruntime-web/dist');

const MINIFIED =
  'Ge("wasm bindInputsOutputs");l._OrtBindOutput(R,v[ge],O[J],0)!==0&&V("Can\'t bind pre-allocated output");$e("wasm bindInputsOutputs"),ft.set(a,[w,S,v,T,A,!0])}l.jsepOnRunStart';
const READABLE = `checkLastError(\`Can't bind pre-allocated output[\${i}] for session=\${sessionId}.\`);
          TRACE_EVENT_END("wasm bindInputsOutputs");
          activeSessions.set(sessionId, [
            sessionHandle,
            inputNamesUTF8Encoded,
            outputNamesUTF8Encoded,
            ioBindingState,
            enableGraphCapture,
            true
          ]);`;

describe('the onnxruntime-web graph-capture mend', () => {
  it('is applied to every installed build that binds inputs and outputs (the WebGPU bundle the worker loads among them)', () => {
    const withBinding = readdirSync(DIST).filter(
      (f) => /\.m?js$/.test(f) && readFileSync(join(DIST, f), 'utf8').includes('wasm bindInputsOutputs'),
    );
    expect(withBinding).toContain('ort.webgpu.bundle.min.mjs');
    for (const f of withBinding) expect(readFileSync(join(DIST, f), 'utf8'), f).toContain(MARK);
  });

  it('leaves a session unbound after each run, in the minified and the readable builds', () => {
    const min = patchText(MINIFIED, 'min');
    expect(min.result).toBe('patched');
    expect(min.text).toContain(`ft.set(a,[w,S,v,T,A,!1${MARK}])`);
    const readable = patchText(READABLE, 'readable');
    expect(readable.result).toBe('patched');
    expect(readable.text).toContain(`enableGraphCapture,\n            false${MARK}\n          ]);`);
  });

  it('is applied once: a mended text is left as it is', () => {
    const once = patchText(MINIFIED, 'min').text;
    expect(patchText(once, 'min')).toEqual({ text: once, result: 'already' });
  });

  it('leaves a build without IO binding alone, and refuses binding code it does not know, naming the file', () => {
    expect(patchText('export const x = 1;', 'other.mjs')).toEqual({ text: 'export const x = 1;', result: 'none' });
    // The WebAssembly glue exports the binding functions but has no call site: left alone.
    const glue = 'Module._OrtBindOutput = wasmExports._OrtBindOutput;';
    expect(patchText(glue, 'ort-wasm-simd-threaded.mjs').result).toBe('none');
    const changed = MINIFIED.replace('[w,S,v,T,A,!0]', '[w,S,v,T,A,B,!0]');
    expect(() => patchText(changed, 'ort.new.mjs')).toThrow(/ort\.new\.mjs: found the IO binding code 0 times/);
    // A build that binds outputs but carries no trace labels is refused too, not skipped.
    const unlabelled = MINIFIED.replaceAll('"wasm bindInputsOutputs"', '""');
    expect(() => patchText(unlabelled, 'ort.stripped.mjs')).toThrow(/found the IO binding code 0 times/);
  });

  it('patches a folder in place and counts what it did', () => {
    const dir = mkdtempSync(join(tmpdir(), 'webswarm-ortpatch-'));
    try {
      writeFileSync(join(dir, 'a.min.mjs'), MINIFIED);
      writeFileSync(join(dir, 'b.mjs'), READABLE);
      writeFileSync(join(dir, 'c.wasm.mjs'), 'no binding here');
      writeFileSync(join(dir, 'notes.txt'), MINIFIED);
      expect(patchDist(dir)).toEqual({ patched: 2, already: 0 });
      expect(patchDist(dir)).toEqual({ patched: 0, already: 2 });
      expect(readFileSync(join(dir, 'notes.txt'), 'utf8')).toBe(MINIFIED);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
