/**
 * embed.js: the one script tag an embedder adds to their site.
 *
 *   <script src="https://SWARM/embed.js" data-model="austen-2m" async></script>
 *
 * It shows a small card and nothing else: no request, no frame, no worker
 * until the visitor clicks Continue. Then it opens the volunteer in an iframe
 * served from the swarm's own origin (so the host page's scripts and headers
 * cannot reach it), which says what it would compute on and asks again with
 * its own button, which opens a window of the swarm's own where the visitor
 * confirms (web/embed/consent-window.ts): this script runs in the host page
 * and anything it does the host page could fake, and the host page can hide
 * or shrink the frame in ways the frame cannot see, but not that window. Then pause and resume. Its styles live in a shadow root
 * (adopted style sheets, which a strict style-src allows), so that the host
 * page's CSS and the widget's cannot touch each other.
 *
 * Options (data attributes): data-model, data-position (bottom-right,
 * bottom-left, top-right, top-left), data-theme (light, dark, auto),
 * data-auto-pause (true: pause while the page is hidden), data-max-share (the
 * most of the time to compute, 0.05–1, default 0.5), data-backend (wasm,
 * webgpu; default: WebGPU where there is an adapter).
 */
import { EMBED_SOURCE, type HostToFrame, isFrameStatus } from '../embed/messages.js';
import { hardwareWords, type WidgetOptions, widgetOptions } from './options.js';

/** The host page's handle on the widget (window.webswarmWidget). */
export interface WidgetHandle {
  readonly state: string;
  readonly steps: number;
  pause(): void;
  resume(): void;
  /** Closes the frame: the volunteer stops at once. */
  stop(): void;
}

declare global {
  interface Window {
    webswarmWidget?: WidgetHandle;
  }
}

const CSS = `
:host { all: initial; position: fixed; z-index: 2147483000; font: 14px/1.4 system-ui, sans-serif; }
:host([data-position="bottom-right"]) { right: 16px; bottom: 16px; }
:host([data-position="bottom-left"]) { left: 16px; bottom: 16px; }
:host([data-position="top-right"]) { right: 16px; top: 16px; }
:host([data-position="top-left"]) { left: 16px; top: 16px; }
.card { --bg: #fff; --fg: #1d2330; --muted: #5b6478; --line: #d8dce6; --accent: #3b6fd8;
  background: var(--bg); color: var(--fg); border: 1px solid var(--line); border-radius: 10px;
  box-shadow: 0 4px 18px rgba(0,0,0,.15); padding: 12px 14px; width: 300px; max-width: calc(100vw - 32px); box-sizing: border-box; }
.card.dark { --bg: #1e2430; --fg: #eef1f7; --muted: #a9b1c3; --line: #38425a; --accent: #6f9cff; }
@media (prefers-color-scheme: dark) { .card.auto { --bg: #1e2430; --fg: #eef1f7; --muted: #a9b1c3; --line: #38425a; --accent: #6f9cff; } }
h2 { font-size: 15px; margin: 0 0 4px; }
p { margin: 0 0 10px; color: var(--muted); font-size: 13px; }
.actions { display: flex; gap: 8px; justify-content: flex-end; }
button { font: inherit; border-radius: 6px; padding: 5px 12px; cursor: pointer; border: 1px solid var(--line); background: transparent; color: var(--fg); }
button.yes { background: var(--accent); border-color: var(--accent); color: #fff; }
button:focus-visible { outline: 2px solid var(--accent); outline-offset: 2px; }
iframe { display: block; width: 100%; height: 120px; border: 0; color-scheme: normal; }
.bar { display: flex; justify-content: space-between; align-items: center; font-size: 12px; color: var(--muted); }
`;

function mountWidget(o: WidgetOptions): void {
  const host = document.createElement('div');
  host.dataset.webswarmWidget = '';
  host.dataset.position = o.position;
  const shadow = host.attachShadow({ mode: 'open' });
  const sheet = new CSSStyleSheet();
  sheet.replaceSync(CSS);
  shadow.adoptedStyleSheets = [sheet];
  const card = document.createElement('section');
  card.className = `card ${o.theme}`;
  card.setAttribute('role', 'region');
  card.setAttribute('aria-label', 'webswarm: donate compute');
  shadow.append(card);

  let frame: HTMLIFrameElement | null = null;
  let state = 'asking';
  let steps = 0;
  const el = <K extends keyof HTMLElementTagNameMap>(tag: K, text?: string, cls?: string) => {
    const e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    if (cls !== undefined) e.className = cls;
    return e;
  };
  const post = (m: HostToFrame) => frame?.contentWindow?.postMessage(m, o.origin);

  const ask = () => {
    const yes = el('button', 'Continue', 'yes');
    const no = el('button', 'No thanks', 'no');
    yes.type = no.type = 'button';
    const actions = el('div', undefined, 'actions');
    actions.append(no, yes);
    card.replaceChildren(
      el('h2', "Donate this tab's computing power to webswarm?"),
      el(
        'p',
        `While this page is open, your browser would run part of a language model for other people's prompts, ${hardwareWords(o.backend)}, using at most ${Math.round(o.maxShare * 100)} % of its time. Continue opens a frame from ${o.origin}; nothing runs until you confirm in a window of ${o.origin} that its button opens.`,
      ),
      actions,
    );
    yes.addEventListener('click', start);
    no.addEventListener('click', () => {
      state = 'declined';
      host.remove();
    });
    yes.focus({ preventScroll: true });
  };

  const start = () => {
    state = 'starting';
    // The theme too: the frame is transparent over the card, so its text must be the card's (dark on light, light on dark).
    const q = new URLSearchParams({ share: String(o.maxShare), autopause: o.autoPause ? '1' : '0', theme: o.theme });
    if (o.model !== null) q.set('model', o.model);
    if (o.backend !== null) q.set('backend', o.backend);
    frame = el('iframe');
    frame.title = 'webswarm volunteer';
    frame.src = `${o.origin}/embed?${q}`;
    const stop = el('button', 'Stop', 'stop');
    stop.type = 'button';
    stop.setAttribute('aria-label', 'Stop donating and close');
    stop.addEventListener('click', () => handle.stop());
    const bar = el('div', undefined, 'bar');
    bar.append(el('span', 'webswarm volunteer'), stop);
    card.replaceChildren(bar, frame);
  };

  // Only the frame this widget opened, from the swarm's origin, may report.
  window.addEventListener('message', (ev) => {
    if (frame === null || ev.source !== frame.contentWindow || ev.origin !== o.origin || !isFrameStatus(ev.data)) return;
    state = ev.data.state;
    steps = ev.data.steps;
    host.dataset.state = state;
    host.dataset.steps = String(steps);
  });

  const handle: WidgetHandle = {
    get state() {
      return state;
    },
    get steps() {
      return steps;
    },
    pause: () => post({ source: EMBED_SOURCE, type: 'pause' }),
    resume: () => post({ source: EMBED_SOURCE, type: 'resume' }),
    stop: () => {
      frame?.remove();
      frame = null;
      state = 'stopped';
      host.remove();
    },
  };
  window.webswarmWidget = handle;
  ask();
  document.body.append(host);
}

function main(): void {
  if (window.webswarmWidget !== undefined) return; // one widget per page, however many tags
  const script =
    (document.currentScript as HTMLScriptElement | null) ?? document.querySelector<HTMLScriptElement>('script[src$="/embed.js"]');
  if (script === null) return;
  const { options: o, problems } = widgetOptions(script.dataset, new URL(script.src, location.href).origin);
  for (const p of problems) console.warn(`webswarm embed.js: ${p}`);
  if (document.body === null) document.addEventListener('DOMContentLoaded', () => mountWidget(o), { once: true });
  else mountWidget(o);
}

try {
  main();
} catch (e) {
  // Never break the host page: a widget that cannot start says so in the console only.
  console.warn('webswarm embed.js could not start:', e);
}
