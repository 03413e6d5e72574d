/**
 * The embed widget's options, read from its script tag's data attributes. A
 * value the widget does not know is never an error that breaks the host page:
 * it is replaced (by the default, or a share kept to its range), and named in
 * a problem that embed.js writes to the console, so that an embedder sees why
 * `data-position="middle"` sits bottom-right.
 */
import { MIN_SHARE, parseShare } from '../../shared/swarm/duty-cycle.js';
import { EMBED_DEFAULT_SHARE } from '../embed/messages.js';

const POSITIONS = ['bottom-right', 'bottom-left', 'top-right', 'top-left'] as const;
type Position = (typeof POSITIONS)[number];
const THEMES = ['light', 'dark', 'auto'] as const;
const BACKENDS = ['wasm', 'webgpu'] as const;
const BOOLEANS = ['true', 'false'] as const;

export interface WidgetOptions {
  readonly origin: string;
  readonly model: string | null;
  readonly position: Position;
  readonly theme: (typeof THEMES)[number];
  readonly autoPause: boolean;
  readonly maxShare: number;
  readonly backend: (typeof BACKENDS)[number] | null;
}

/** The data attributes as a script element's dataset holds them (data-max-share is maxShare). */
export type WidgetDataset = Readonly<Record<string, string | undefined>>;

/** The widget's options from its script's dataset and origin, and a sentence for each value it did not take as written. */
export function widgetOptions(d: WidgetDataset, origin: string): { options: WidgetOptions; problems: string[] } {
  const problems: string[] = [];
  const oneOf = <T extends string>(
    attr: string,
    raw: string | undefined,
    allowed: readonly T[],
    fallback: T,
    used = fallback as string,
  ): T => {
    if (raw === undefined) return fallback;
    const v = allowed.find((a) => a === raw);
    if (v !== undefined) return v;
    problems.push(`${attr}=${JSON.stringify(raw)} is not one of ${allowed.join(', ')}: ${used} is used`);
    return fallback;
  };
  const share = parseShare(d.maxShare, EMBED_DEFAULT_SHARE);
  if (d.maxShare !== undefined) {
    // parseShare's own reading, NaN where it is no number; kept to its range where it differs from the number written.
    const read = parseShare(d.maxShare, Number.NaN);
    if (Number.isNaN(read))
      problems.push(`data-max-share=${JSON.stringify(d.maxShare)} is not a number from ${MIN_SHARE} to 1: ${share} is used`);
    else if (read !== Number(d.maxShare))
      problems.push(
        `data-max-share=${JSON.stringify(d.maxShare)} is outside ${MIN_SHARE}–1 (a share of the time: 0.5 is half): ${share} is used`,
      );
  }
  const backend = oneOf<(typeof BACKENDS)[number] | 'default'>(
    'data-backend',
    d.backend,
    BACKENDS,
    'default',
    'WebGPU where there is an adapter',
  );
  return {
    options: {
      origin,
      model: d.model ?? null,
      position: oneOf('data-position', d.position, POSITIONS, 'bottom-right'),
      theme: oneOf('data-theme', d.theme, THEMES, 'auto'),
      autoPause: oneOf('data-auto-pause', d.autoPause, BOOLEANS, 'true') === 'true',
      maxShare: share,
      backend: backend === 'default' ? null : backend,
    },
    problems,
  };
}

/** What the card says the visitor's browser would compute on. */
export function hardwareWords(backend: WidgetOptions['backend']): string {
  if (backend === 'wasm') return 'on its CPU';
  if (backend === 'webgpu') return 'on its GPU';
  return 'on its GPU where it offers one, else on the CPU';
}
