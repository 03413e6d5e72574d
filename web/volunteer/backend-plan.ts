import { useEffect, useState } from 'react';
import { type ModelListing, parseModelListings } from '../../shared/protocol/http.js';
import type { Backend } from '../compute/messages.js';
import { ortBuildFor, runtimeBytes } from '../compute/ort-build.js';
import { webgpuAdapter } from '../compute/webgpu.js';
import { shownValue } from './page-params.js';

/**
 * What this tab will compute on, found before consent without starting
 * anything heavy (requestAdapter only: no device, no download, no worker), so
 * that the page can say it before the visitor clicks.
 */
export type BackendPlan =
  | { readonly kind: 'detecting' }
  | { readonly kind: 'gpu'; readonly adapter: string; readonly download?: DownloadPlan | null }
  | { readonly kind: 'cpu'; readonly why: 'no-adapter' | 'asked'; readonly download?: DownloadPlan | null }
  | { readonly kind: 'failed'; readonly message: string };

/**
 * What the tab downloads the first time it computes, said before consent (null where the swarm's model list could
 * not be read): the onnxruntime-web build its backend loads, and its part of the model's weights; which part is the
 * server's to assign after the click, so the least and the most a stage of the served model takes.
 */
export interface DownloadPlan {
  /** The build's WebAssembly binary; null where this page was built without the figures (a dev server's define). */
  readonly runtimeBytes: number | null;
  readonly weights: { readonly least: number; readonly most: number };
}

/** The download for `backend` of the model `listing` describes. */
export function downloadPlan(backend: Backend, listing: ModelListing): DownloadPlan {
  return {
    runtimeBytes: runtimeBytes(ortBuildFor(backend)),
    weights: { least: Math.min(...listing.stageBytes), most: Math.max(...listing.stageBytes) },
  };
}

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
async function checkModelServed(model: string | null): Promise<ModelListing | null> {
  for (let i = 1; ; i++) {
    try {
      return await checkModelServedOnce(model);
    } catch (e) {
      if (e instanceof NotServed) throw e;
      // The served model's list is read for the download figures alone: unread, the page says less, and starts.
      if (i >= LIST_TRIES) {
        if (model === null) return null;
        throw e;
      }
      await new Promise((r) => setTimeout(r, LIST_RETRY_MS * i));
    }
  }
}

/** The listing of `model` (null: the served one, the first listed), read from /api/models. */
async function checkModelServedOnce(model: string | null): Promise<ModelListing | null> {
  const res = await fetch('/api/models');
  if (!res.ok) throw new Error(`/api/models: HTTP ${res.status}`);
  const listings = parseModelListings(await res.json());
  if (!listings.ok) throw new Error(listings.reason);
  if (model === null) return listings.value[0] ?? null;
  const listing = listings.value.find((m) => m.modelId === model);
  if (listing === undefined) {
    const served = listings.value.map((m) => m.modelId);
    throw new NotServed(`this swarm serves ${served.join(', ') || 'no model'}, not ${shownValue(model)}`);
  }
  return listing;
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
      .then(async (listing) => ({ listing, ...(await chooseBackend(asked)) }))
      .then(({ listing, backend, adapter }) => {
        const download = listing === null ? null : downloadPlan(backend, listing);
        if (live)
          setPlan(
            adapter === null
              ? { kind: 'cpu', why: asked === 'wasm' ? 'asked' : 'no-adapter', download }
              : { kind: 'gpu', adapter, download },
          );
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
