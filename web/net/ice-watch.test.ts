// What a volunteer is told when ICE fails: the description of a connection's
// ICE and the rule that gives up on one that can never connect. IceWatch is
// fed the events a browser's RTCPeerConnection fires (Node has no WebRTC
// here; e2e/relay.spec.ts drives the real one in Chromium against coturn).
import { describe, expect, it } from 'vitest';
import { describeIce, hopeless, type IceObservation, IceWatch } from './ice-watch.js';

const TURN_401 = { url: 'turn:127.0.0.1:3478?transport=udp', code: 401, text: 'Unauthorized' };
const base: IceObservation = { policy: 'relay', candidates: {}, errors: [], gathering: 'complete', connection: 'new' };

describe('describeIce', () => {
  it('names ICE, TURN, the refusal and the setting to check when TURN refuses the credentials', () => {
    expect(describeIce({ ...base, errors: [TURN_401] })).toBe(
      'ICE (relay only): no relay candidate from the TURN servers; gathering complete, connection new; ' +
        'TURN turn:127.0.0.1:3478?transport=udp answered 401 Unauthorized; TURN credentials refused (check TURN_SECRET against the TURN server)',
    );
  });

  it('counts the candidates gathered by type', () => {
    const o = {
      ...base,
      policy: 'all' as const,
      candidates: { host: 2, srflx: 1, relay: 0 },
      gathering: 'gathering',
      connection: 'checking',
    };
    expect(describeIce(o)).toBe('ICE (any candidate): candidates 2 host, 1 srflx; gathering gathering, connection checking');
  });
});

describe('hopeless', () => {
  it('is a connection whose gathering ended without a single candidate', () => {
    expect(hopeless(base)).toBe(true);
    expect(hopeless({ ...base, candidates: { relay: 1 } })).toBe(false);
    expect(hopeless({ ...base, gathering: 'gathering' })).toBe(false); // a TURN server may still answer
  });
});

/** The parts of RTCPeerConnection IceWatch reads: its events and its two states. */
class FakePc extends EventTarget {
  iceGatheringState = 'new';
  iceConnectionState = 'new';
  fire(type: string, fields: Record<string, unknown> = {}): void {
    this.dispatchEvent(Object.assign(new Event(type), fields));
  }
}

describe('IceWatch', () => {
  it('gives up once, with the TURN refusal, when gathering ends with no candidate', () => {
    const pc = new FakePc();
    const why: string[] = [];
    const watch = new IceWatch(pc as unknown as RTCPeerConnection, 'relay', (w) => why.push(w));
    pc.iceGatheringState = 'gathering';
    pc.fire('icegatheringstatechange');
    pc.fire('icecandidateerror', { url: TURN_401.url, errorCode: 401, errorText: 'Unauthorized.' });
    pc.fire('icecandidateerror', { url: TURN_401.url, errorCode: 401, errorText: 'Unauthorized.' }); // told once
    expect(why).toEqual([]);
    pc.iceGatheringState = 'complete';
    pc.fire('icecandidate', { candidate: null }); // the end of candidates
    pc.fire('icegatheringstatechange');
    pc.fire('icegatheringstatechange');
    expect(why).toEqual([watch.describe()]);
    expect(why[0]).toMatch(
      /^ICE \(relay only\): no relay candidate.*TURN turn:127\.0\.0\.1:3478\?transport=udp answered 401 Unauthorized; TURN credentials refused/,
    );
    expect(watch.observation().errors).toHaveLength(1);
  });

  it('does not give up on a connection that gathered a relay candidate', () => {
    const pc = new FakePc();
    const why: string[] = [];
    const watch = new IceWatch(pc as unknown as RTCPeerConnection, 'relay', (w) => why.push(w));
    pc.fire('icecandidate', { candidate: { type: 'relay' } });
    pc.iceGatheringState = 'complete';
    pc.fire('icegatheringstatechange');
    expect(why).toEqual([]);
    expect(watch.observation().candidates).toEqual({ relay: 1 });
  });
});
