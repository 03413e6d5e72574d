import { useEffect, useState } from 'react';
import { parseModelListings } from '../../shared/protocol/http.js';
import type { CaptureOptions } from '../compute/captured-stages.js';
import type { Progress } from '../compute/stage-loader.js';
import { type LocalModel, loadLocalModel, pickBackend } from './run-model.js';

type Status =
  | { readonly kind: 'loading'; readonly progress: Progress | null }
  | { readonly kind: 'ready'; readonly model: LocalModel }
  | { readonly kind: 'failed'; readonly message: string };

declare global {
  interface Window {
    /** Set when the model is loaded: lets scripts (and tests) drive this page. */
    webswarmCheck?: LocalModel;
  }
}

async function start(onProgress: (p: Progress) => void): Promise<LocalModel> {
  const params = new URLSearchParams(location.search);
  const res = await fetch('/api/models');
  if (!res.ok) throw new Error(`/api/models: HTTP ${res.status}`);
  const models = parseModelListings(await res.json());
  if (!models.ok) throw new Error(models.reason);
  const wanted = params.get('model');
  const listing = models.value.find((m) => wanted === null || m.modelId === wanted);
  if (listing === undefined) throw new Error(`model ${wanted ?? '(any)'} is not served here`);
  // ?batch=off: each session's step its own runtime call (benchmarks compare it with batching across sessions).
  // ?capture=on: the stages run with graph capture (WebGPU, fused form); &capturePositions=N: rows of N positions;
  // &captureRowWaitMs=N: how long a session's first step waits for a row when all are held (default 0);
  // &captureReservedRows=N: rows only sessions numbered below 0 take (default 0).
  return loadLocalModel(
    listing.baseUrl,
    await pickBackend(params.get('backend')),
    onProgress,
    params.get('batch') !== 'off',
    params.get('capture') === 'on' ? captureOptions(params) : null,
  );
}

/** A whole number from ?name=, or undefined where absent. */
function wholeParam(params: URLSearchParams, name: string): number | undefined {
  const raw = params.get(name);
  if (raw === null) return undefined;
  if (!/^\d+$/.test(raw)) throw new Error(`?${name}= must be a whole number, not ${raw}`);
  return Number(raw);
}

/** The captured rows from ?capturePositions= (absent: the model's whole context), ?captureRowWaitMs= and ?captureReservedRows= (absent: 0). */
function captureOptions(params: URLSearchParams): CaptureOptions {
  const positions = wholeParam(params, 'capturePositions');
  const rowWaitMs = wholeParam(params, 'captureRowWaitMs');
  const reservedRows = wholeParam(params, 'captureReservedRows');
  return {
    ...(positions === undefined ? {} : { positions }),
    ...(rowWaitMs === undefined ? {} : { rowWaitMs }),
    ...(reservedRows === undefined ? {} : { reservedRows }),
  };
}

export function CheckApp() {
  const [status, setStatus] = useState<Status>({ kind: 'loading', progress: null });
  const [prompt, setPrompt] = useState('It is a truth universally acknowledged, that');
  const [output, setOutput] = useState<string>('');
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    let live = true;
    start((progress) => live && setStatus({ kind: 'loading', progress }))
      .then((model) => {
        window.webswarmCheck = model;
        if (live) setStatus({ kind: 'ready', model });
      })
      .catch((e: unknown) => live && setStatus({ kind: 'failed', message: e instanceof Error ? e.message : String(e) }));
    return () => {
      live = false;
    };
  }, []);

  const run = async (model: LocalModel) => {
    setBusy(true);
    try {
      const ids = model.tokenizer.encode(prompt);
      const r = await model.greedy(ids, 48);
      setOutput(`${prompt}${model.tokenizer.decode(r.tokens)}\n\n(${r.tokens.length} tokens, ${r.msPerToken.toFixed(1)} ms per token)`);
    } catch (e) {
      setOutput(`error: ${(e as Error).message}`);
    } finally {
      setBusy(false);
    }
  };

  return (
    <main>
      <h1>webswarm: run a model in this tab</h1>
      <p>Downloads every stage of the model, checks each file's sha256, and runs them one after another in a Web Worker.</p>
      {status.kind === 'loading' && (
        <p data-testid="status">
          Loading…{' '}
          {status.progress !== null &&
            `${status.progress.file} ${Math.round((100 * status.progress.loadedBytes) / status.progress.totalBytes)}%${status.progress.fromCache ? ' (cached)' : ''}`}
        </p>
      )}
      {status.kind === 'failed' && (
        <p data-testid="status" role="alert">
          Failed: {status.message}
        </p>
      )}
      {status.kind === 'ready' && (
        <>
          <p data-testid="status">
            Ready: {status.model.manifest.modelId}, {status.model.manifest.stages.length} stages on {status.model.backend}
            {status.model.adapter !== null && ` (${status.model.adapter})`}
            {status.model.backend === 'webgpu' && `, onnxruntime-web's ${status.model.build} build`}
          </p>
          <label>
            Prompt
            <textarea value={prompt} onChange={(e) => setPrompt(e.target.value)} rows={3} />
          </label>
          <button type="button" disabled={busy} onClick={() => void run(status.model)}>
            Generate
          </button>
          <pre data-testid="output">{output}</pre>
        </>
      )}
    </main>
  );
}
