import { useEffect, useState } from 'react';
import type { Backend } from '../compute/messages.js';
import { webgpuAdapter } from '../compute/webgpu.js';

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

/** The plan for `asked`, as a status union that starts at 'detecting'. */
export function useBackendPlan(asked: string | null): BackendPlan {
  const [plan, setPlan] = useState<BackendPlan>({ kind: 'detecting' });
  useEffect(() => {
    let live = true;
    chooseBackend(asked)
      .then(({ adapter }) => {
        if (live) setPlan(adapter === null ? { kind: 'cpu', why: asked === 'wasm' ? 'asked' : 'no-adapter' } : { kind: 'gpu', adapter });
      })
      .catch((e: unknown) => {
        if (live) setPlan({ kind: 'failed', message: (e as Error).message });
      });
    return () => {
      live = false;
    };
  }, [asked]);
  return plan;
}
