import { describe, expect, it } from 'vitest';
import { MAX_MESSAGE_BYTES } from './frames.js';
import { MAX_FRAME_BATCH, maxScoreRows, packFrameMessages, SCORE_ROWS_BYTES } from './messages.js';
import {
  MAX_ICE_SERVERS,
  MAX_SIGNAL_BYTES,
  MAX_UNREACHED,
  parseFailure,
  parseFrameMessage,
  parseHandshake,
  parseHello,
  parseIceConfig,
  parseLogits,
  parseReady,
  parseSessionJoined,
  parseSignal,
} from './validate.js';
import { PROTOCOL_VERSION } from './version.js';

describe('message validation', () => {
  it('checks the protocol version and role in the handshake', () => {
    expect(parseHandshake({ protocol: PROTOCOL_VERSION, role: 'volunteer' })).toEqual({
      ok: true,
      value: { protocol: PROTOCOL_VERSION, role: 'volunteer' },
    });
    expect(parseHandshake({ protocol: PROTOCOL_VERSION + 1, role: 'volunteer' })).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/protocol/),
    });
    expect(parseHandshake({ protocol: PROTOCOL_VERSION, role: 'admin' })).toMatchObject({ ok: false });
    expect(parseHandshake(null)).toMatchObject({ ok: false });
  });

  it('accepts a well-formed hello and refuses the rest', () => {
    expect(parseHello({ backend: 'webgpu', adapter: 'google swiftshader' })).toEqual({
      ok: true,
      value: { backend: 'webgpu', adapter: 'google swiftshader', fault: null, clientKey: null, capacity: null },
    });
    expect(parseHello({ backend: 'wasm', adapter: null, fault: 'noise' })).toMatchObject({ ok: true });
    expect(parseHello({ backend: 'wasm', adapter: null, fault: 'meltdown' })).toMatchObject({ ok: false });
    expect(parseHello({ backend: 'wasm', adapter: null, clientKey: '3f1c2a9e-77aa-4b1e' })).toMatchObject({ ok: true });
    expect(parseHello({ backend: 'wasm', adapter: null, clientKey: '../../etc' })).toMatchObject({ ok: false });
    expect(parseHello({ backend: 'wasm', adapter: null })).toMatchObject({ ok: true });
    for (const m of [
      { backend: 'cuda', adapter: null },
      { backend: 'wasm' },
      { backend: 'wasm', adapter: 'x'.repeat(300) },
      'hello',
      [1],
    ]) {
      expect(parseHello(m), JSON.stringify(m).slice(0, 40)).toMatchObject({ ok: false });
    }
  });

  it("takes logits of the vocabulary's length with their roll-back count (absent: 0), and refuses a bad count by name", () => {
    const logits = new Float32Array(4).buffer;
    expect(parseLogits({ sessionId: 1, step: 2, logits, resets: 3 }, 4)).toMatchObject({ ok: true, value: { step: 2, resets: 3 } });
    expect(parseLogits({ sessionId: 1, step: 2, logits }, 4)).toMatchObject({ ok: true, value: { resets: 0 } });
    for (const resets of [-1, 1.5, '2', null])
      expect(parseLogits({ sessionId: 1, step: 2, logits, resets }, 4)).toEqual({
        ok: false,
        reason: 'resets must be an unsigned integer',
      });
    expect(parseLogits({ sessionId: 1, step: 2, logits }, 5)).toMatchObject({ ok: false });
    // Whole rows (a scored step's positions), up to maxScoreRows of the vocabulary; the session checks the count.
    expect(parseLogits({ sessionId: 1, step: 0, logits: new Float32Array(12).buffer }, 4)).toMatchObject({ ok: true });
    const most = maxScoreRows(2048);
    expect(most * 2048 * 4).toBeLessThanOrEqual(SCORE_ROWS_BYTES);
    expect(parseLogits({ sessionId: 1, step: 0, logits: new Float32Array(most * 2048).buffer }, 2048)).toMatchObject({ ok: true });
    expect(parseLogits({ sessionId: 1, step: 0, logits: new Float32Array((most + 1) * 2048).buffer }, 2048)).toEqual({
      ok: false,
      reason: `logits hold ${(most + 1) * 2048 * 4} bytes, expected 8192 (vocabulary 2048 × float32) times 1 to ${most} rows, a top form of 1 to 256 tokens, or scored forms of 1 to 96 rows`,
    });
    for (const bytes of [0, 4 * 4 + 4])
      expect(parseLogits({ sessionId: 1, step: 0, logits: new ArrayBuffer(bytes) }, 4)).toMatchObject({ ok: false });
    // A vocabulary past the budget still has its one row.
    expect(maxScoreRows(1_000_000)).toBe(1);
  });

  it('takes a failure with its roll-back count (absent: none), and refuses a bad count by name', () => {
    const failure = { sessionId: 1, step: 2, code: 'ERR_COMPUTE', message: 'out of memory' };
    expect(parseFailure({ ...failure, resets: 3 })).toEqual({ ok: true, value: { ...failure, resets: 3 } });
    expect(parseFailure(failure)).toEqual({ ok: true, value: failure });
    for (const resets of [-1, 1.5, '2', null])
      expect(parseFailure({ ...failure, resets })).toEqual({ ok: false, reason: 'resets must be an unsigned integer' });
    expect(parseFailure({ ...failure, code: 'ERR_NOPE' })).toMatchObject({ ok: false });
  });

  it('bounds stage numbers and timings', () => {
    expect(parseReady({ modelId: 'austen-2m', stage: 2, stepMs: 1.5 })).toMatchObject({ ok: true });
    for (const m of [
      { modelId: 'austen-2m', stage: -1, stepMs: 1 },
      { modelId: 'austen-2m', stage: 1.5, stepMs: 1 },
      { modelId: 'austen-2m', stage: 1, stepMs: Number.NaN },
      { modelId: '', stage: 1, stepMs: 1 },
    ]) {
      expect(parseReady(m)).toMatchObject({ ok: false });
    }
  });

  it('takes a session:joined with or without the neighbours it could not reach, bounded, and refuses the rest by name', () => {
    expect(parseSessionJoined({ sessionId: 7 })).toEqual({ ok: true, value: { sessionId: 7 } });
    expect(parseSessionJoined({ sessionId: 7, unreached: ['a', 'b', 'a'] })).toEqual({
      ok: true,
      value: { sessionId: 7, unreached: ['a', 'b'] },
    });
    for (const m of [
      { sessionId: 7, unreached: 'a' },
      { sessionId: 7, unreached: [''] },
      { sessionId: 7, unreached: [3] },
      { sessionId: 7, unreached: ['x'.repeat(300)] },
      { sessionId: 7, unreached: Array.from({ length: MAX_UNREACHED + 1 }, (_, i) => `v${i}`) },
    ])
      expect(parseSessionJoined(m)).toEqual({ ok: false, reason: `unreached must be at most ${MAX_UNREACHED} peer ids` });
    expect(parseSessionJoined({ sessionId: -1, unreached: [] })).toMatchObject({ ok: false });
  });

  it('bounds signalling payloads', () => {
    expect(parseSignal({ to: 'peer-1', data: { type: 'offer', sdp: 'v=0' } })).toMatchObject({ ok: true });
    expect(parseSignal({ to: 'peer-1', data: { sdp: 'x'.repeat(MAX_SIGNAL_BYTES + 1) } })).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/over/),
    });
    // Not an object: a peer's signalling library reads its fields (null threw in the receiving tab).
    for (const data of [null, 'offer', 3, [{ type: 'offer' }]])
      expect(parseSignal({ to: 'peer-1', data })).toMatchObject({ ok: false, reason: expect.stringMatching(/must be an object/) });
    expect(parseSignal({ to: '', data: 1 })).toMatchObject({ ok: false });
    expect(parseSignal({ to: 'peer-1' })).toMatchObject({ ok: false });
  });

  it('takes an ICE configuration a browser accepts, and refuses the rest by name', () => {
    const turn = { urls: 'turn:127.0.0.1:3478', username: '1700003600:v1', credential: 'V6ssquM7NVwRBRpPASU3/FuNRuw=' };
    expect(parseIceConfig({ iceServers: [{ urls: 'stun:a.example' }, turn], iceTransportPolicy: 'relay' })).toEqual({
      ok: true,
      value: { iceServers: [{ urls: ['stun:a.example'] }, { ...turn, urls: ['turn:127.0.0.1:3478'] }], iceTransportPolicy: 'relay' },
    });
    expect(parseIceConfig({ iceServers: [], iceTransportPolicy: 'all' }).ok).toBe(true);
    const cases: [unknown, RegExp][] = [
      [null, /must be an object/],
      [{ iceServers: [], iceTransportPolicy: 'none' }, /iceTransportPolicy must be one of all, relay/],
      [{ iceServers: {}, iceTransportPolicy: 'all' }, /iceServers must be a list/],
      [{ iceServers: [{ urls: [] }], iceTransportPolicy: 'all' }, /urls must be a URL or a list of 1\.\.8 URLs/],
      [{ iceServers: [{ urls: 'javascript:alert(1)' }], iceTransportPolicy: 'all' }, /is not a stun:, stuns:, turn: or turns: URL/],
      [{ iceServers: [{ urls: 'turn:a.example' }], iceTransportPolicy: 'all' }, /server 1 has a TURN URL but no username and credential/],
      [{ iceServers: [{ ...turn, username: 'x'.repeat(300) }], iceTransportPolicy: 'all' }, /username must be a string of 1\.\.256/],
      [{ iceServers: Array(MAX_ICE_SERVERS + 1).fill({ urls: 'stun:a' }), iceTransportPolicy: 'all' }, /more than 16/],
    ];
    for (const [m, reason] of cases) {
      const r = parseIceConfig(m);
      expect(r.ok, JSON.stringify(m)?.slice(0, 60)).toBe(false);
      if (!r.ok) expect(r.reason).toMatch(reason);
    }
  });
});

describe('parseFrameMessage (frames for the server replicas, packed)', () => {
  const m = (n: number, fill = 1) => new Uint8Array(n).fill(fill);
  it('unpacks the messages in order', () => {
    const r = parseFrameMessage({ to: 'server:2', data: packFrameMessages([m(3, 1), m(5, 2)]) }, 'to');
    expect(r.ok && r.value.peer).toBe('server:2');
    expect(r.ok && r.value.data.map((d) => [...d])).toEqual([
      [1, 1, 1],
      [2, 2, 2, 2, 2],
    ]);
  });
  it('refuses other peers, non-binary data, truncated or empty packs, oversized messages and too many of them', () => {
    const reason = (raw: unknown) => {
      const r = parseFrameMessage(raw, 'to');
      return r.ok ? 'ok' : r.reason;
    };
    expect(reason({ to: 'someone', data: packFrameMessages([m(1)]) })).toMatch(/must name a server replica/);
    expect(reason({ to: 'server:0', data: [m(1)] })).toMatch(/must be binary/);
    expect(reason({ to: 'server:0', data: packFrameMessages([m(10)]).slice(0, 8) })).toMatch(/runs past the end/);
    expect(reason({ to: 'server:0', data: new Uint8Array(2) })).toMatch(/ends inside a length/);
    expect(reason({ to: 'server:0', data: new Uint8Array(0) })).toMatch(/packs no message/);
    expect(reason({ to: 'server:0', data: packFrameMessages([m(0)]) })).toMatch(/holds 1 to/);
    expect(reason({ to: 'server:0', data: packFrameMessages([m(MAX_MESSAGE_BYTES + 1)]) })).toMatch(/holds 1 to/);
    expect(reason({ to: 'server:0', data: packFrameMessages(Array.from({ length: MAX_FRAME_BATCH + 1 }, () => m(1))) })).toMatch(
      /more than 256 messages/,
    );
    expect(reason({ to: 'server:0', data: packFrameMessages(Array.from({ length: 4 }, () => m(250 * 1024))) })).toMatch(/over/);
  });
});
