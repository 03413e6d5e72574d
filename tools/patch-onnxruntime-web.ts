// npm's postinstall: mends one line of onnxruntime-web (1.30, 1.31) that
// breaks graph capture, which a WebGPU volunteer's captured decode path uses
// (web/compute/captured-stages.ts).
//
// With enableGraphCapture, onnxruntime-web binds a session's inputs and
// outputs at its first run and marks them bound for good. At the next run it
// no longer knows the outputs were the caller's own buffers: it takes each for
// a new output and looks up a GPU buffer handle that its first run already
// released, and the run throws ("Cannot set properties of undefined"). The
// mend leaves them unbound after each run, as every session without capture
// already is: the next run binds the same buffers again, and onnxruntime
// replays what it captured (e2e/gpu-kv-cache.spec.ts checks the tokens).
//
// Run as a script it patches node_modules/onnxruntime-web/dist in place, once
// (a file patched before is left as it is), and fails naming the file where
// the code to mend is not found: a new onnxruntime-web must be looked at again.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const MARK = '/*webswarm: rebound each run under graph capture*/';

// The minified builds: `<trace end>("wasm bindInputsOutputs"),<sessions>.set(<id>,[<5 names>,!0])`.
const MINIFIED = /("wasm bindInputsOutputs"\),[\w$]+\.set\([\w$]+,\[[\w$]+,[\w$]+,[\w$]+,[\w$]+,[\w$]+,)!0(\]\))/g;
// The readable builds.
const READABLE =
  /(TRACE_EVENT_END\("wasm bindInputsOutputs"\);\s*activeSessions\.set\(sessionId, \[\s*sessionHandle,\s*inputNamesUTF8Encoded,\s*outputNamesUTF8Encoded,\s*ioBindingState,\s*enableGraphCapture,\s*)true(\s*\]\);)/g;

export type PatchResult = 'patched' | 'already' | 'none';

/**
 * The text with the mend applied: 'none' where it has no IO binding code at all (a build without it), 'already' where
 * it was mended before. Throws where the binding code is there but not as this mend knows it.
 */
export function patchText(text: string, name: string): { text: string; result: PatchResult } {
  // Keyed on the binding code's own error message (its call site, not the WebAssembly glue's export of the same
  // name), not on a trace label a build could strip: a build that binds outputs, but not in the form below, is
  // refused, never skipped.
  if (!text.includes("Can't bind pre-allocated output")) return { text, result: 'none' };
  if (text.includes(MARK)) return { text, result: 'already' };
  let n = 0;
  const out = text
    .replace(MINIFIED, (_m, a: string, b: string) => {
      n++;
      return `${a}!1${MARK}${b}`;
    })
    .replace(READABLE, (_m, a: string, b: string) => {
      n++;
      return `${a}false${MARK}${b}`;
    });
  if (n !== 1)
    throw new Error(
      `${name}: found the IO binding code ${n} times, not once, in the form this patch knows: a new onnxruntime-web? See tools/patch-onnxruntime-web.ts`,
    );
  return { text: out, result: 'patched' };
}

/** Patches every .js and .mjs file of `dist`; returns how many were patched now and before. */
export function patchDist(dist: string): { patched: number; already: number } {
  const counts = { patched: 0, already: 0 };
  for (const f of readdirSync(dist)) {
    if (!/\.m?js$/.test(f)) continue;
    const path = join(dist, f);
    const { text, result } = patchText(readFileSync(path, 'utf8'), path);
    if (result === 'patched') writeFileSync(path, text);
    if (result !== 'none') counts[result]++;
  }
  return counts;
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const dist = resolve('node_modules/onnxruntime-web/dist');
  const { patched, already } = patchDist(dist);
  if (patched + already === 0) throw new Error(`${dist}: no onnxruntime-web build with IO binding found to patch`);
  process.stdout.write(`onnxruntime-web: graph capture mend applied to ${patched} files (${already} had it)\n`);
}
