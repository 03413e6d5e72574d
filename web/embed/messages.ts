/**
 * Messages between the embed widget on a host page (embed.js) and the
 * volunteer frame it opens from the swarm's origin (/embed), by postMessage.
 */
export const EMBED_SOURCE = 'webswarm';

/** The share of time an embedded volunteer computes unless data-max-share says otherwise. */
export const EMBED_DEFAULT_SHARE = 0.5;

export type HostToFrame = { readonly source: typeof EMBED_SOURCE; readonly type: 'pause' | 'resume' };

export interface FrameStatus {
  readonly source: typeof EMBED_SOURCE;
  readonly type: 'status';
  readonly state: string;
  readonly steps: number;
  readonly stage: number | null;
  readonly backend: string;
  readonly reputation: number | null;
}

export function isHostToFrame(v: unknown): v is HostToFrame {
  if (typeof v !== 'object' || v === null) return false;
  const m = v as Record<string, unknown>;
  return m.source === EMBED_SOURCE && (m.type === 'pause' || m.type === 'resume');
}

export function isFrameStatus(v: unknown): v is FrameStatus {
  if (typeof v !== 'object' || v === null) return false;
  const m = v as Record<string, unknown>;
  return m.source === EMBED_SOURCE && m.type === 'status' && typeof m.state === 'string' && typeof m.steps === 'number';
}
