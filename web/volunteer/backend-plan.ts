import { useEffect, useState } from 'react';
import { parseModelListings } from '../../shared/protocol/http.js';
import type { Backend } from '../compute/messages.js';
import { webgpuAdapter } from '../compute/webgpu.js';
import { shownValue } from './page-params.js';

/**
 * What this tab will compute on, found before consent without starting
 * anything heavy (requestAdapter only: no device, no download, no worker), so
 * that the page can say it before the visitor clicks.
 */
export type BackendPlan =
  | { readonly kind: 'detecting' }
  | { readonly kind: 'gpu'; readonly adapter: string }
  | { readonly kind: 'cpu'; readonly why: 'no-adapter' | 'asked' }
  | { readonly kind: 'failed'; readonly message: string };

/** The backend for `asked` (?backend=, data-backend): WebGPU where the browser gives an adapter, unless WASM was asked for. */
export async function chooseBackend(asked: string | null): Promise<{ backend: Backend; adapter: string | null }> {
  const adapter = asked === 'wasm' ? null : await webgpuAdapter();
  if (asked === 'webgpu' && adapter === null) throw new Error('WebGPU was asked for (?backend=webgpu), but this browser gives no adapter');
  return adapter === null ? { backend: 'wasm', adapter: null } : { backend: 'webgpu', adapter };
}

/** A model the swarm does not serve: an answer, not a passing failure (checkModelServed). */
class NotServed extends Error {}

/** Tries of the model list before consent, and the wait before each again (a deploy's passing 502, say). */
const LIST_TRIES = 3;
const LIST_RETRY_MS = 1_000;

/**
 * Refuses to start for a model the swarm does not serve (`model` null: the served one), naming what it serves. A
 * list that could not be read is tried again, LIST_TRIES times in all (before consent it would leave the button
 * disabled until a reload), then refused, saying why.
 */
async function checkModelServed(model: string | null): Promise<void> {
  for (let i = 1; ; i++) {
    try {
      return await checkModelServedOnce(model);
    } catch (e) {
      if (e instanceof NotServed || i >= LIST_TRIES) throw e;
      await new Promise((r) => setTimeout(r, LIST_RETRY_MS * i));
    }
  }
}

async function checkModelServedOnce(model: string | null): Promise<void> {
  if (model === null) return;
  const res = await fetch('/api/models');
  if (!res.ok) throw new Error(`/api/models: HTTP ${res.status}`);
  const listings = parseModelListings(await res.json());
  if (!listings.ok) throw new Error(listings.reason);
  const served = listings.value.map((m) => m.modelId);
  if (!served.includes(model)) throw new NotServed(`this swarm serves ${served.join(', ') || 'no model'}, not ${shownValue(model)}`);
}

/**
 * The plan for `asked` and `model` (?model=, data-model), as a status union that starts at 'detecting': `failed`
 * before consent where the tab could not start (a model the swarm does not serve, WebGPU asked for and absent), so
 * the visitor is never asked to consent to what cannot run.
 */
export function useBackendPlan(asked: string | null, model: string | null): BackendPlan {
  const [plan, setPlan] = useState<BackendPlan>({ kind: 'detecting' });
  useEffect(() => {
    let live = true;
    checkModelServed(model)
      .then(() => chooseBackend(asked))
      .then(({ adapter }) => {
        if (live) setPlan(adapter === null ? { kind: 'cpu', why: asked === 'wasm' ? 'asked' : 'no-adapter' } : { kind: 'gpu', adapter });
      })
      .catch((e: unknown) => {
        if (live) setPlan({ kind: 'failed', message: (e as Error).message });
      });
    return () => {
      live = false;
    };
  }, [asked, model]);
  return plan;
}
