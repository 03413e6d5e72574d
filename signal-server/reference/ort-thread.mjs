// The server's stage runner, in a thread of its own (see thread-executor.ts):
// onnxruntime-web's WASM backend computes a step synchronously, so run on the
// server's main thread it held the event loop (sockets, votes, HTTP) for the
// whole step. Plain JavaScript: a worker thread is loaded by Node itself,
// without the TypeScript loader.
//
// One thread serves every runner of the process (each a set of sessions).
// Messages in: { id, op: 'create', stages: Uint8Array[], options } (answered
// { id, sessions, names }), { id, op: 'run', session, feeds: { name: { dtype,
// dims, data } }, fetches, shared } (answered { id, outputs: { name: { type,
// dims, data } } }, their buffers transferred, but for the outputs `shared`
// names: those are copied into shared memory, which the caller feeds back
// without a copy), { id, op: 'release', sessions } (answered { id }). A
// failure is answered { id, error }.
import { parentPort } from 'node:worker_threads';
import * as ort from 'onnxruntime-web';

// Every session is computed on this one thread, one at a time: WASM, single-threaded (steady results and timing).
ort.env.wasm.numThreads = 1;
ort.env.logLevel = 'error';

/** @type {Map<number, ort.InferenceSession>} */
const sessions = new Map();
let nextSession = 0;

async function create({ stages, options }) {
  const made = [];
  try {
    for (const bytes of stages) made.push(await ort.InferenceSession.create(bytes, options));
  } catch (e) {
    await Promise.all(made.map((s) => s.release()));
    throw e;
  }
  const ids = made.map((s) => {
    sessions.set(nextSession, s);
    return nextSession++;
  });
  return { sessions: ids, names: { inputs: made.map((s) => s.inputNames), outputs: made.map((s) => s.outputNames) } };
}

/** A typed array's copy in a SharedArrayBuffer of its own. */
function inSharedMemory(data) {
  const copy = new data.constructor(new SharedArrayBuffer(data.byteLength));
  copy.set(data);
  return copy;
}

async function run({ session: id, feeds, fetches, shared = [] }) {
  const session = sessions.get(id);
  if (session === undefined) throw new RangeError(`no session ${id}`);
  const inputs = {};
  for (const [name, t] of Object.entries(feeds)) inputs[name] = new ort.Tensor(t.dtype, t.data, t.dims);
  const out = await session.run(inputs, fetches);
  const outputs = {};
  const transfer = [];
  for (const [name, t] of Object.entries(out)) {
    if (shared.includes(name) && ArrayBuffer.isView(t.data)) {
      // A KV cache: the caller feeds it back next step, and shared memory crosses to this thread without a copy.
      outputs[name] = { type: t.type, dims: t.dims, data: inSharedMemory(t.data) };
      continue;
    }
    // A view into a larger buffer is copied: transferring its buffer would move more than this output.
    const data = t.data.byteOffset === 0 && t.data.byteLength === t.data.buffer.byteLength ? t.data : t.data.slice();
    outputs[name] = { type: t.type, dims: t.dims, data };
    if (!transfer.includes(data.buffer)) transfer.push(data.buffer);
  }
  return { outputs, transfer };
}

async function release({ sessions: ids }) {
  for (const id of ids) {
    const session = sessions.get(id);
    sessions.delete(id);
    await session?.release();
  }
  return {};
}

function answer(m) {
  if (m.op === 'create') return create(m).then((r) => parentPort.postMessage({ id: m.id, ...r }));
  if (m.op === 'run') return run(m).then(({ outputs, transfer }) => parentPort.postMessage({ id: m.id, outputs }, transfer));
  if (m.op === 'release') return release(m).then(() => parentPort.postMessage({ id: m.id }));
  return Promise.reject(new Error(`unknown op ${String(m.op)}`));
}

// One message at a time, in order: a session is not re-entrant, and a release comes after the runs sent before it.
let queue = Promise.resolve();

parentPort.on('message', (m) => {
  queue = queue.then(() => answer(m).catch((e) => parentPort.postMessage({ id: m.id, error: e instanceof Error ? e.message : String(e) })));
});
