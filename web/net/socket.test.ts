// The pages' connection (connectSwarm) when the server refuses it for holding
// too many connections from one address: a real server on port 0 counting
// this machine's address (LOCAL_ADDRESSES empty) with room for one, and the
// real socket.io-client in Node. Socket.IO does not retry a refusal by the
// server's middleware, so before, a tab refused once stayed disconnected.
import { describe, expect, it } from 'vitest';
import { PROTOCOL_VERSION } from '../../shared/protocol/version.js';
import { connectClient } from '../../signal-server/testing/socket-client.js';
import { tinyServerForFile } from '../../signal-server/testing/tiny-stages.js';
import { connectRefusal, connectSwarm } from './socket.js';

const server = tinyServerForFile('webswarm-page-socket-', { maxSocketsPerAddress: 1, localAddresses: [] });

describe('connectSwarm', () => {
  it('says why the server refused it, and connects once a place frees', async () => {
    const url = server().address().url;
    const holder = connectClient(url, { protocol: PROTOCOL_VERSION, role: 'requester' });
    await new Promise<void>((resolve) => holder.once('connect', () => resolve()));
    const page = connectSwarm('requester', url);
    try {
      const refusal = await new Promise<ReturnType<typeof connectRefusal>>((resolve) =>
        page.once('connect_error', (e) => resolve(connectRefusal(e))),
      );
      expect(refusal?.code).toBe('ERR_RATE_LIMITED');
      expect(refusal?.message).toMatch(/at most 1 connections/);
      expect(page.connected).toBe(false);
      const t0 = Date.now();
      holder.disconnect();
      // Asked again 1–2 s after the refusal (then 2–4 s, …): within the first two tries.
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('not connected within 8 s of the place freeing')), 8_000);
        page.once('connect', () => {
          clearTimeout(timer);
          resolve();
        });
      });
      expect(page.connected).toBe(true);
      expect(Date.now() - t0).toBeLessThan(8_000);
    } finally {
      page.disconnect();
      holder.disconnect();
    }
  });

  it('is not connected again after the page closed it while refused', async () => {
    const url = server().address().url;
    // The place the last test's page held frees once the server sees it gone.
    let holder = connectClient(url, { protocol: PROTOCOL_VERSION, role: 'requester' });
    for (let i = 0; i < 50; i++) {
      const ok = await new Promise<boolean>((resolve) => {
        holder.once('connect', () => resolve(true));
        holder.once('connect_error', () => resolve(false));
      });
      if (ok) break;
      holder.disconnect();
      await new Promise((r) => setTimeout(r, 100));
      holder = connectClient(url, { protocol: PROTOCOL_VERSION, role: 'requester' });
    }
    expect(holder.connected).toBe(true);
    const page = connectSwarm('requester', url);
    try {
      await new Promise<void>((resolve) => page.once('connect_error', () => resolve()));
      page.disconnect();
      holder.disconnect();
      // Past the first retry (1–2 s): still closed, as the page left it.
      await new Promise((r) => setTimeout(r, 3_000));
      expect(page.connected).toBe(false);
      expect(page.active).toBe(false);
    } finally {
      page.disconnect();
      holder.disconnect();
    }
  });

  it('reads no refusal from an error without the server’s code and message', () => {
    expect(connectRefusal(new Error('websocket error'))).toBeNull();
    expect(connectRefusal(Object.assign(new Error('x'), { data: { code: 7, message: 'm' } }))).toBeNull();
    expect(connectRefusal(Object.assign(new Error('x'), { data: { code: 'ERR_X', message: 'm' } }))).toEqual({
      code: 'ERR_X',
      message: 'm',
    });
  });
});
