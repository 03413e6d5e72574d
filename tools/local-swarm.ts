/**
 * A local swarm: headless Chromium tabs that volunteer for a server, one
 * browser context each (separate storage, separate WebRTC stack), driven by
 * playwright-core with Debian's Chromium.
 */
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { FAULT_KINDS, type FaultKind, isFaultKind } from '../shared/swarm/faults.js';
import { findChromium } from './ensure-chromium.js';

const READY_TIMEOUT_MS = 120_000;
/** A trusted click on the volunteer page's consent button, as a visitor's: the page starts nothing without one (web/volunteer/consent.ts). */
export async function consent(page: Page): Promise<void> {
  await page.getByTestId('consent').click({ timeout: CONSENT_TIMEOUT_MS });
}

/** The consent button is enabled once the page has checked for a GPU and shown it for half a second. */
const CONSENT_TIMEOUT_MS = 30_000;
/** How long a consented tab may take to be welcomed by the server, or refused, before the next tab is clicked. */
const HELLO_TIMEOUT_MS = 15_000;

/**
 * The features playwright-core disables (its chromiumSwitches, version 1.65). Chromium reads only the last
 * --disable-features it is given, so the one launchChromium adds repeats them (e2e/chromium-flags.spec.ts checks
 * the command line a real Chromium shows).
 */
const PLAYWRIGHT_DISABLED_FEATURES = [
  'AvoidUnnecessaryBeforeUnloadCheckSync',
  'DestroyProfileOnBrowserClose',
  'HttpsUpgrades',
  'HttpsFirstBalancedModeAutoEnable',
  'LensOverlay',
  'MediaRouter',
  'PaintHolding',
  'ThirdPartyStoragePartitioning',
  'AvoidCorsURLLoaderRestartOnRedirect',
  'TcpPortRandomizationWin',
  'OptimizationHints',
  'NetworkTimeServiceQuerying',
  'AimEnabled',
  'PreconnectToSearch',
  'msForceBrowserSignIn',
  'msEdgeUpdateLaunchServicesPreferredVersion',
];

/**
 * Headless Chromium 156 loads the omnibox pop-up's WebUI (chrome://omnibox-popup.top-chrome, in a renderer of its
 * own) for every window, and Playwright opens a window for every context: about 3.5 s of CPU for each volunteer
 * tab in a Chromium trace here, for a pop-up nobody sees (9 tabs ready in 56 s with it, 37 s without, one probe).
 */
const HEADLESS_WEBUI_FEATURES = ['WebUIOmniboxPopup', 'WebUIOmniboxFullPopup', 'WebUIOmniboxAimPopup'];

/**
 * Launches CHROMIUM_PATH, else `chromium` from PATH (tools/ensure-chromium.ts installs it), with the flags
 * measured to work here (../shared/PLATFORM.md): no outbound traffic, WebGPU on SwiftShader when asked.
 */
export async function launchChromium(opts: { webgpu: boolean; extraArgs?: readonly string[] }): Promise<Browser> {
  const found = findChromium(process.env);
  if (!found.ok) throw new Error(found.message);
  const args = [
    '--no-sandbox',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--disable-quic',
  ];
  if (opts.webgpu) args.push('--enable-unsafe-webgpu');
  args.push(`--disable-features=${[...PLAYWRIGHT_DISABLED_FEATURES, ...HEADLESS_WEBUI_FEATURES].join(',')}`);
  // The e2e suite's tabs run WebAssembly on V8's baseline compiler only (vitest.e2e.config.ts sets
  // WEBSWARM_LIFTOFF_ONLY): the optimizing tier's compile of onnxruntime's 14 MB module took 2.3 s of CPU in
  // every tab, and its results are the same. Benchmarks and `npm start` keep both tiers.
  if (process.env.WEBSWARM_LIFTOFF_ONLY === '1') args.push('--js-flags=--liftoff-only');
  // Benchmarks compare conditions (bench/hop-floor.ts: background throttling off); the product cannot set flags for volunteers.
  args.push(...(opts.extraArgs ?? []));
  return chromium.launch({ executablePath: found.path, headless: true, args });
}

/**
 * The tab's compute worker served as a browser without JSPI (Firefox and
 * Safari today) runs it: WebAssembly.Suspending and .promising deleted before
 * its first statement, so that it loads onnxruntime-web's asyncify WebGPU
 * build (web/compute/ort-web.ts). No flag of Chromium 156 turns JSPI off.
 */
export async function servedWithoutJspi(page: Page): Promise<void> {
  await page.route(/\/assets\/worker-[^/]*\.js$/, async (route) => {
    const response = await route.fetch();
    const body = `delete WebAssembly.Suspending;\ndelete WebAssembly.promising;\n${await response.text()}`;
    await route.fulfill({ response, body });
  });
}

export interface LocalSwarm {
  readonly pages: Page[];
  /** Opens one more volunteer tab (for churn tests and `npm run swarm`). */
  add(backend?: 'wasm' | 'webgpu'): Promise<Page>;
  close(): Promise<void>;
}

export interface SwarmOptions {
  readonly serverUrl: string;
  readonly volunteers: number;
  /** Backend per volunteer index; WASM when not given. */
  readonly backendOf?: (index: number) => 'wasm' | 'webgpu';
  /** A fault to inject per volunteer index (the server must be in test or demo mode), or null. */
  readonly faultOf?: (index: number) => FaultKind | null;
  /** False: the tabs run each session's step as its own call (batching across sessions off, ?batch=off); default true. */
  readonly batching?: boolean;
  readonly log?: (line: string) => void;
  /** Pages stamp each step's path (?trace=1: window.webswarmTrace), for the bench. */
  readonly trace?: boolean;
  /** Where the tabs run a step's data path (?datapath=); default: WEBSWARM_DATAPATH, else the page's default. */
  readonly dataPath?: 'main' | 'worker';
  /** The same per volunteer index (before dataPath). */
  readonly dataPathOf?: (index: number) => 'main' | 'worker';
  /** Graph capture per volunteer index (?capture=: on, off or a number of sessions); none when not given. */
  readonly captureOf?: (index: number) => string | null;
}

async function waitReady(page: Page): Promise<void> {
  await page.waitForFunction(() => window.webswarmVolunteer?.state === 'ready' || window.webswarmVolunteer?.state === 'error', null, {
    timeout: READY_TIMEOUT_MS,
  });
  const state = await page.evaluate(() => window.webswarmVolunteer);
  if (state?.state !== 'ready') throw new Error(`volunteer failed: ${state?.lastError ?? 'unknown error'}`);
}

export async function startLocalSwarm(o: SwarmOptions): Promise<LocalSwarm> {
  const backendOf = o.backendOf ?? (() => 'wasm');
  const needsGpu = Array.from({ length: o.volunteers }, (_, i) => backendOf(i)).includes('webgpu');
  const browser = await launchChromium({ webgpu: needsGpu });
  const contexts: BrowserContext[] = [];
  const pages: Page[] = [];
  let opened = 0;
  /** A new context's tab on the volunteer page, not yet consented: nothing starts in it before the click. */
  const open = async (index: number, backend: 'wasm' | 'webgpu'): Promise<Page> => {
    const context = await browser.newContext();
    contexts.push(context);
    const page = await context.newPage();
    page.on('pageerror', (e) => o.log?.(`[volunteer ${index}] ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error') o.log?.(`[volunteer ${index}] console: ${m.text()}`);
    });
    page.on('requestfailed', (r) => o.log?.(`[volunteer ${index}] request failed: ${r.url()} ${r.failure()?.errorText ?? ''}`));
    page.on('crash', () => o.log?.(`[volunteer ${index}] the page crashed`));
    const fault = o.faultOf?.(index) ?? null;
    const trace = o.trace === true ? '&trace=1' : '';
    const batch = o.batching === false ? '&batch=off' : '';
    const path = o.dataPathOf?.(index) ?? o.dataPath ?? process.env.WEBSWARM_DATAPATH;
    const datapath = path === 'main' || path === 'worker' ? `&datapath=${path}` : '';
    const capture = o.captureOf?.(index) ?? null;
    const captured = capture === null ? '' : `&capture=${encodeURIComponent(capture)}`;
    await page.goto(
      `${o.serverUrl}/volunteer?backend=${backend}${fault === null ? '' : `&fault=${fault}`}${trace}${batch}${datapath}${captured}`,
    );
    return page;
  };
  /** The click, then the server's answer to the tab's hello: the next tab's hello comes after it, so stages fill in order. */
  const join = async (page: Page): Promise<void> => {
    await consent(page);
    pages.push(page);
    await page
      .waitForFunction(
        () => {
          const s = window.webswarmVolunteer;
          return s !== undefined && (s.volunteerId !== null || s.lastError !== null || s.state === 'error' || s.state === 'unfit');
        },
        null,
        { timeout: HELLO_TIMEOUT_MS },
      )
      // A tab the server does not answer is waitReady's to report.
      .catch(() => {});
  };
  const add = async (backend: 'wasm' | 'webgpu' = backendOf(opened)): Promise<Page> => {
    const page = await open(opened++, backend);
    await join(page);
    return page;
  };
  try {
    // The next page loads while this one waits for its consent button to be enabled (about a second, idle); the
    // clicks come in order. 9 tabs ready in 20 s instead of 22–23 s one after another.
    opened = o.volunteers;
    const opening = (i: number): Promise<Page> | null => {
      if (i >= o.volunteers) return null;
      const p = open(i, backendOf(i));
      // Awaited below; a failure while the one before joins is that one's catch's (the browser closes).
      p.catch(() => {});
      return p;
    };
    let next = opening(0);
    for (let i = 0; next !== null; i++) {
      const page = await next;
      next = opening(i + 1);
      await join(page);
    }
    await Promise.all(pages.map(waitReady));
  } catch (e) {
    await browser.close();
    throw e;
  }
  return {
    pages,
    async add(backend) {
      const page = await add(backend);
      await waitReady(page);
      return page;
    },
    async close() {
      for (const c of contexts) await c.close().catch(() => {});
      await browser.close();
    },
  };
}

/** Parses --faulty N --fault KIND: the first N volunteers inject KIND. */
export function faultsFromArgs(faulty: string | undefined, fault: string | undefined): (index: number) => FaultKind | null {
  const n = faulty === undefined ? 0 : Number(faulty);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--faulty must be an integer ≥ 0, got "${faulty}"`);
  if (n === 0) return () => null;
  if (!isFaultKind(fault)) throw new Error(`--fault must be one of ${FAULT_KINDS.join(', ')}, got "${fault ?? ''}"`);
  return (i) => (i < n ? fault : null);
}
