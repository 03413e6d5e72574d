// The pages under the bounded feeds, in Chromium against a real server: the
// landing and chat pages subscribe to swarm:status and follow volunteers coming
// and going; the dashboard lists at most 64 volunteers of a stage and counts the
// rest. The volunteers are Socket.IO clients in Node that say hello (they load nothing).
import { io as connect, type Socket } from 'socket.io-client';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ClientToServerEvents } from '../shared/protocol/messages.js';
import { DASHBOARD_REPLICAS_SHOWN, type ServerToClientEvents } from '../shared/protocol/messages.js';
import { PROTOCOL_VERSION } from '../shared/protocol/version.js';
import { NodeVolunteer } from '../signal-server/testing/node-volunteer.js';
import { type OneStageRig, startOneStageRig } from './harness.js';

type Client = Socket<ServerToClientEvents, ClientToServerEvents>;
const SEEN_MS = 10_000;
const MANY = DASHBOARD_REPLICAS_SHOWN + 6;

let rig: OneStageRig;
const volunteers: Client[] = [];

beforeAll(async () => {
  rig = await startOneStageRig();
});
afterEach(async () => {
  for (const v of volunteers.splice(0)) v.disconnect();
  await expect.poll(() => rig.server.coordinator?.registry.size, { timeout: SEEN_MS }).toBe(0);
});
afterAll(() => rig?.close());

/** A volunteer that registers and stays idle; resolves once it has its stage. */
async function volunteer(): Promise<Client> {
  const c: Client = connect(rig.server.address().url, {
    auth: { protocol: PROTOCOL_VERSION, role: 'volunteer' },
    transports: ['websocket'],
    reconnection: false,
    forceNew: true,
  });
  volunteers.push(c);
  const assigned = new Promise<void>((resolve) => c.once('volunteer:assign', () => resolve()));
  c.emit('volunteer:hello', { backend: 'wasm', adapter: null, fault: null, clientKey: null });
  await assigned;
  return c;
}

describe('pages on the bounded feeds', () => {
  it('the landing and chat pages follow volunteers joining and leaving', async () => {
    const url = rig.server.address().url;
    const landing = await rig.browser.newPage();
    await landing.goto(url);
    const chat = await rig.browser.newPage();
    await chat.goto(`${url}/chat`);
    const online = () => landing.getByTestId('online').textContent();
    const chatOnline = () => chat.getByTestId('swarm').textContent();
    await expect.poll(online, { timeout: SEEN_MS }).toContain('0 volunteers online');
    const vs = await Promise.all([volunteer(), volunteer(), volunteer()]);
    await expect.poll(online, { timeout: SEEN_MS }).toContain('3 volunteers online');
    await expect.poll(chatOnline, { timeout: SEEN_MS }).toContain('3 volunteers online');
    vs[0]?.disconnect();
    await expect.poll(online, { timeout: SEEN_MS }).toContain('2 volunteers online');
    await expect.poll(chatOnline, { timeout: SEEN_MS }).toContain('2 volunteers online');
    await landing.close();
    await chat.close();
  });

  it(`the dashboard lists ${DASHBOARD_REPLICAS_SHOWN} volunteers of a stage, counts all ${MANY}, and follows changes`, async () => {
    const vs: Client[] = [];
    for (let i = 0; i < MANY; i++) vs.push(await volunteer());
    const dash = await rig.browser.newPage();
    await dash.goto(`${rig.server.address().url}/dashboard`);
    const summary = dash.getByTestId('summary');
    await expect.poll(() => summary.textContent(), { timeout: SEEN_MS }).toContain(`${MANY} volunteers online`);
    expect(await dash.locator('[data-stage="0"] [data-volunteer]').count()).toBe(DASHBOARD_REPLICAS_SHOWN);
    expect(await dash.locator('[data-stage="0"] [data-testid="more"]').textContent()).toBe(`+${MANY - DASHBOARD_REPLICAS_SHOWN} more`);
    expect(await dash.locator('[data-stage="0"] th').textContent()).toContain('0/1 ready');
    // Two that compute join and become ready (they answer their challenge steps), three leave: the counts follow, listed or not.
    const computing = [new NodeVolunteer(rig.server.address().url), new NodeVolunteer(rig.server.address().url)];
    for (const v of vs.slice(0, 3)) v.disconnect();
    const online = MANY + computing.length - 3;
    try {
      await expect.poll(() => summary.textContent(), { timeout: SEEN_MS }).toContain(`${online} volunteers online`);
      await expect.poll(() => dash.locator('[data-stage="0"] th').textContent(), { timeout: SEEN_MS }).toContain('2/1 ready');
      expect(await dash.locator('[data-stage="0"] [data-testid="more"]').textContent()).toBe(`+${online - DASHBOARD_REPLICAS_SHOWN} more`);
      // The ready ones are listed first.
      const firstIds = await dash
        .locator('[data-stage="0"] [data-volunteer]')
        .evaluateAll((els) => els.slice(0, 2).map((e) => e.textContent));
      expect(firstIds).toEqual(firstIds.map(() => expect.stringContaining('ready')));
    } finally {
      for (const v of computing) await v.close();
    }
    await dash.close();
  });
});
