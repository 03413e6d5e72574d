// A hostile volunteer sends `signal` events to a peer it is linked with in a
// tight loop (as a tab that destroys its connection and offers a new one, as
// fast as it can, would): what the relay passes on is bounded by the
// sender's own event budget, the sender is cut with ERR_RATE_LIMITED, and the
// peer it aimed at stays connected. A real server on port 0, real
// socket.io-client sockets.
import { describe, expect, it } from 'vitest';
import type { WireError } from '../shared/protocol/errors.js';
import { SOCKET_EVENT_BUDGET } from './coordinator/event-budget.js';
import { connectClient, helloVolunteer } from './testing/socket-client.js';
import { tinyServerForFile } from './testing/tiny-stages.js';

const server = tinyServerForFile('webswarm-signal-flood-', { redundancy: 1, routeWaitMs: 300 });

/** Offers sent at most: ten times the budget's burst. */
const FLOOD = 10 * SOCKET_EVENT_BUDGET.burst;

describe('a hostile volunteer floods a linked peer with signal events', () => {
  it('the relay passes on no more than the sender may send (its burst, then its rate), cuts it off, and the peer stays', async () => {
    const hostile = await helloVolunteer(connectClient(server().address().url));
    const honest = await helloVolunteer(connectClient(server().address().url));
    try {
      server().coordinator?.links.link(hostile.id, honest.id);
      let relayed = 0;
      honest.c.on('signal', ({ from }) => {
        if (from === hostile.id) relayed += 1;
      });
      const honestErrors: string[] = [];
      honest.c.on('server:error', (e: WireError) => honestErrors.push(e.code));
      const cut = new Promise<{ codes: string[]; reason: string }>((resolve) => {
        const codes: string[] = [];
        hostile.c.on('server:error', (e: WireError) => codes.push(e.code));
        hostile.c.on('disconnect', (reason) => resolve({ codes, reason }));
      });
      const t0 = performance.now();
      // In batches, a turn apart, as fast as the client can (all at once, the server reads the lot in one
      // turn, cuts the sender within it, and serves none: socket.io drops what a closed socket sent).
      for (let i = 0; i < FLOOD && hostile.c.connected; i++) {
        hostile.c.emit('signal', { to: honest.id, data: { type: 'offer', sdp: `v=0 ${i}` } });
        if (i % 25 === 24) await new Promise((r) => setTimeout(r, 5));
      }
      const { codes, reason } = await cut;
      // What was in flight when the cut came lands within a moment, then no more.
      await new Promise((r) => setTimeout(r, 500));
      const seconds = (performance.now() - t0) / 1000;
      process.stderr.write(`signal flood: ${relayed} of ${FLOOD} relayed in ${seconds.toFixed(2)} s, then cut (${codes.join(', ')})\n`);
      expect(codes).toContain('ERR_RATE_LIMITED');
      expect(reason).toBe('io server disconnect');
      expect(relayed).toBeGreaterThan(0);
      expect(relayed).toBeLessThanOrEqual(SOCKET_EVENT_BUDGET.burst + SOCKET_EVENT_BUDGET.ratePerS * seconds);
      // The peer it aimed at is still connected, told nothing, and still answered.
      expect(honest.c.connected).toBe(true);
      expect(honestErrors).toEqual([]);
      const answered = new Promise<WireError>((resolve) => honest.c.once('server:error', resolve));
      honest.c.emit('signal', { to: 'nobody', data: {} });
      expect((await answered).code).toBe('ERR_NOT_LINKED');
    } finally {
      hostile.c.disconnect();
      honest.c.disconnect();
    }
  });
});
