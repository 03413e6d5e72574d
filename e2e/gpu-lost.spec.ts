// A WebGPU volunteer (SwiftShader here) whose GPU device is lost in the middle
// of a generation: the gpu-lost fault destroys the GPUDevice onnxruntime-web
// runs on through the real API (GPUDevice.destroy(), whose lost promise then
// resolves with reason 'destroyed'), as a driver reset or a GPU process crash
// loses it in the field. The tab must stop counting as ready at once, the
// generation must end with the reference runner's tokens, and the tab must
// come back (a new volunteer, on WebGPU again: one loss is no reason to give
// up the GPU), pass a fresh challenge and compute the next request right.
//
// One stage, three replicas. Of the route's WASM tabs one is silent, so every
// token needs the GPU tab's vote: the generation cannot finish without it
// before the loss (it would, on the two WASM tabs alone, before the slow GPU
// tab's third step), and after the loss a spare takes its place. For the later
// request the spare is gone, so the route is the silent tab, an honest one and
// the GPU tab come back: each token is agreed by the GPU tab or not at all.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FAULT_AFTER_STEPS } from '../shared/swarm/faults.js';
import { fetchSwarmListing } from '../testing/swarm-listing.js';
import { type E2eSwarm, startE2eSwarm } from './harness.js';

/** Tabs open (and register) in this order; drawing 0 makes the first three the route and the last the spare. */
const GPU = 0;
const SILENT = 1;
const SPARE = 3;
const PROMPT = 'Emma Woodhouse, handsome, clever, and rich,';
const TOKENS = 12;
const LATER_TOKENS = 6;
/** Both data paths: the worker's replica computes on the worker's sessions, the page's through ComputeClient. */
const DATA_PATHS = ['worker', 'main'] as const;
/** How soon after the loss the server must have stopped counting the tab as ready. */
const UNREADY_WITHIN_MS = 5_000;
/** SwiftShader WebGPU is slow (PLATFORM.md): the tab's reload and challenge take seconds. */
const BACK_WITHIN_MS = 90_000;

describe.each(DATA_PATHS)('a WebGPU volunteer loses its GPU device mid-generation (%s data path)', (dataPath) => {
  let e: E2eSwarm;
  beforeAll(async () => {
    e = await startE2eSwarm({
      dataPath,
      volunteers: SPARE + 1,
      stages: 1,
      redundancy: 3,
      allowFaults: true,
      backendOf: (i) => (i === GPU ? 'webgpu' : 'wasm'),
      faultOf: (i) => (i === GPU ? 'gpu-lost' : i === SILENT ? 'silent' : null),
      random: () => 0,
    });
  });
  afterAll(() => e?.close());

  it('stops counting as ready at once, the tokens do not change, and it comes back on WebGPU after a fresh challenge', async () => {
    const page = e.swarm.pages[GPU];
    if (page === undefined) throw new Error('no GPU tab');
    const status = () => page.evaluate(() => window.webswarmVolunteer);
    const before = await status();
    expect(before?.backend).toBe('webgpu');
    expect(before?.dataPath).toBe(dataPath);
    expect(before?.deviceLoss).toBeNull();
    const oldId = before?.volunteerId;
    const coordinator = e.server.coordinator;
    if (coordinator === null) throw new Error('no coordinator');
    await expect.poll(() => coordinator.volunteers().filter((v) => v.ready).length, { timeout: 60_000 }).toBe(SPARE + 1);
    const spare = e.swarm.pages[SPARE];
    const spareId = await spare?.evaluate(() => window.webswarmVolunteer?.volunteerId);

    const expected = await e.expected(PROMPT, TOKENS);
    const request = e.complete({ prompt: PROMPT, max_tokens: TOKENS, temperature: 0 });
    // The fault fires after FAULT_AFTER_STEPS steps of this generation.
    await page.waitForFunction(() => window.webswarmVolunteer?.deviceLoss != null, null, { timeout: 120_000, polling: 50 });
    const lostAt = (await status())?.deviceLoss?.at ?? 0;
    await expect
      .poll(() => coordinator.volunteers().some((v) => v.id === oldId && v.ready), { timeout: UNREADY_WITHIN_MS, interval: 50 })
      .toBe(false);
    expect(Date.now() - lostAt).toBeLessThan(UNREADY_WITHIN_MS + 1_000);

    const { status: code, json } = await request;
    expect(code).toBe(200);
    expect(json.webswarm.tokens).toEqual(expected);
    // The route as it ended: the spare in the lost tab's place.
    expect(json.webswarm.route[0]).toContain(spareId);
    expect(json.webswarm.route[0]).not.toContain(oldId);

    const after = await status();
    expect(after?.deviceLoss).toMatchObject({ loss: { reason: 'destroyed' }, backend: 'webgpu', why: 'gpu-again', losses: 1 });
    // It computed its steps of the generation before the loss (the fault waits for them).
    expect(after?.stepsComputed).toBeGreaterThanOrEqual(FAULT_AFTER_STEPS);
    const said = await page.getByTestId('device-loss').textContent({ timeout: 10_000 });
    expect(said).toContain("This tab's GPU device was lost (destroyed");
    expect(said).toContain('again on the GPU (WebGPU)');

    // Back as a new volunteer, on WebGPU, ready for the server only once it answered a fresh challenge.
    await page.waitForFunction(
      (old) => window.webswarmVolunteer?.state === 'ready' && window.webswarmVolunteer.volunteerId !== old,
      oldId,
      { timeout: BACK_WITHIN_MS },
    );
    const back = await status();
    expect(back?.backend).toBe('webgpu');
    const newId = back?.volunteerId;
    await expect.poll(() => coordinator.volunteers().find((v) => v.id === newId)?.ready, { timeout: BACK_WITHIN_MS }).toBe(true);
    expect(coordinator.volunteers().find((v) => v.id === newId)).toMatchObject({ backend: 'webgpu' });
    expect(coordinator.volunteers().some((v) => v.id === oldId)).toBe(false);

    // A later request runs through it (the spare gone: three tabs for three replicas) and gives the reference tokens.
    await spare?.context().close();
    await expect.poll(() => coordinator.volunteers().length, { timeout: 30_000 }).toBe(SPARE);
    const stepsBefore = back?.stepsComputed ?? 0;
    const laterExpected = await e.expected(PROMPT, LATER_TOKENS);
    const later = await e.complete({ prompt: PROMPT, max_tokens: LATER_TOKENS, temperature: 0 });
    expect(later.status).toBe(200);
    expect(later.json.webswarm.tokens).toEqual(laterExpected);
    expect(later.json.webswarm.route[0]).toContain(newId);
    await page.waitForFunction((n) => (window.webswarmVolunteer?.stepsComputed ?? 0) >= n, stepsBefore + LATER_TOKENS, {
      timeout: 60_000,
    });
    // Nobody disagreed with a majority: nothing the lost device computed was reported.
    const listing = (await fetchSwarmListing(e.server.address().url)).list;
    expect(
      listing.filter((v) => v.disagreed !== 0),
      'volunteers with disagreements',
    ).toEqual([]);
  });
});
