import { describe, expect, it } from 'vitest';
import { startTurnServer, tcpFreeOn, udpFreeOn } from './turn-server.js';

describe('the loopback turnserver of the relay tests', () => {
  // A CI run failed when another process held port + 1, which coturn binds for
  // RFC 5780 unless told not to: the harness checks only the port it chose.
  it('holds only the port it was given, not port + 1', async () => {
    const turn = await startTurnServer('secret');
    try {
      const next = turn.port + 1;
      expect(await tcpFreeOn('127.0.0.1', turn.port)).toBe(false);
      expect(await tcpFreeOn('127.0.0.1', next)).toBe(true);
      expect(await udpFreeOn('udp4', '127.0.0.1', next)).toBe(true);
      expect(await udpFreeOn('udp6', '::1', next)).toBe(true);
    } finally {
      await turn.close();
    }
  });
});
