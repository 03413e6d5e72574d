// The ICE configuration volunteers are handed: coturn's REST-API credentials,
// which servers get them, and the settings that cannot work refused up front.
import { describe, expect, it } from 'vitest';
import { type IceOptions, iceConfigFor, iceOptionsProblem, LOCAL_ICE, parseIceServersSetting, turnCredentials } from './ice-config.js';

const STUN = { urls: ['stun:stun.example.org:3478'] };
const TURN = { urls: ['turn:turn.example.org:3478?transport=udp', 'turns:turn.example.org:5349'] };
const options = (o: Partial<IceOptions>): IceOptions => ({ ...LOCAL_ICE, ...o });

describe('TURN credentials (coturn use-auth-secret)', () => {
  it('are expiry:volunteerId and base64(HMAC-SHA1(secret, username))', () => {
    // Expected value from `printf %s '1700003600:volunteer-1' | openssl dgst -sha1 -hmac north-wind -binary | base64`.
    expect(turnCredentials('north-wind', 'volunteer-1', 1_700_003_600)).toEqual({
      username: '1700003600:volunteer-1',
      credential: 'V6ssquM7NVwRBRpPASU3/FuNRuw=',
    });
  });

  it('go on every server with a TURN URL, valid for the TTL from now, and nowhere else', () => {
    const o = options({ iceServers: [STUN, TURN], turnSecret: 'north-wind', turnTtlS: 3600, transportPolicy: 'relay' });
    const c = iceConfigFor(o, 'volunteer-1', 1_700_000_000_500);
    expect(c.iceTransportPolicy).toBe('relay');
    expect(c.iceServers[0]).toEqual(STUN);
    expect(c.iceServers[1]).toEqual({ urls: TURN.urls, ...turnCredentials('north-wind', 'volunteer-1', 1_700_003_600) });
    // Another volunteer, another user name and password.
    const other = iceConfigFor(o, 'volunteer-2', 1_700_000_000_500).iceServers[1];
    expect(other?.username).toBe('1700003600:volunteer-2');
    expect(other?.credential).not.toBe(c.iceServers[1]?.credential);
  });

  it('are not made without a secret: static credentials pass as configured', () => {
    const fixed = { ...TURN, username: 'u', credential: 'p' };
    expect(iceConfigFor(options({ iceServers: [STUN, fixed] }), 'v', 0)).toEqual({ iceServers: [STUN, fixed], iceTransportPolicy: 'all' });
  });
});

describe('ICE settings', () => {
  it('parse ICE_SERVERS, urls as a string or a list', () => {
    expect(parseIceServersSetting('[{"urls":"stun:a.example:3478"},{"urls":["turn:b.example"]}]', 'ICE_SERVERS')).toEqual([
      { urls: ['stun:a.example:3478'] },
      { urls: ['turn:b.example'] },
    ]);
    expect(parseIceServersSetting('[]', 'ICE_SERVERS')).toEqual([]);
  });

  it('name the setting in the error and never quote a credential', () => {
    expect(() => parseIceServersSetting('[{urls:', 'ICE_SERVERS')).toThrow(/^ICE_SERVERS must be JSON/);
    expect(() => parseIceServersSetting('{"urls":"stun:a"}', '--ice-servers')).toThrow(/^--ice-servers must be a list/);
    expect(() => parseIceServersSetting('[{"urls":"http://a.example"}]', 'ICE_SERVERS')).toThrow(
      'ICE_SERVERS server 1: "http://a.example" is not a stun:, stuns:, turn: or turns: URL',
    );
    expect(() => parseIceServersSetting('[{"urls":"turn:a","credential":7}]', 'ICE_SERVERS')).toThrow(/credential must be a string/);
    expect(() => parseIceServersSetting('[{"url":"turn:a"}]', 'ICE_SERVERS')).toThrow(/unknown field "url"/);
    // Numbered as an operator counts them: the second server is server 2 (before, server 1, counted from 0).
    expect(() => parseIceServersSetting('[{"urls":"stun:a"},{"urls":"ftp://b"}]', 'ICE_SERVERS')).toThrow(
      /^ICE_SERVERS server 2: "ftp:\/\/b"/,
    );
    expect(iceOptionsProblem(options({ iceServers: [STUN, TURN] }))).toMatch(/^ICE_SERVERS server 2 has a TURN URL/);
    const secretJson = '[{"urls":"turn:a","username":"u","credential":"hunter2-secret","x":1}]';
    expect(() => parseIceServersSetting(secretJson, 'ICE_SERVERS')).toThrow();
    try {
      parseIceServersSetting(secretJson, 'ICE_SERVERS');
    } catch (e) {
      expect((e as Error).message).not.toContain('hunter2');
    }
  });

  it('refuse combinations that cannot work', () => {
    expect(iceOptionsProblem(LOCAL_ICE)).toBeNull();
    expect(iceOptionsProblem(options({ transportPolicy: 'relay', iceServers: [STUN] }))).toMatch(/relay needs a turn: or turns: URL/);
    expect(iceOptionsProblem(options({ turnSecret: 's', iceServers: [STUN] }))).toMatch(/TURN_SECRET is set but ICE_SERVERS has no turn/);
    expect(iceOptionsProblem(options({ iceServers: [TURN] }))).toMatch(/server 1 has a TURN URL but no username and credential/);
    expect(iceOptionsProblem(options({ iceServers: [TURN], turnSecret: 's', transportPolicy: 'relay' }))).toBeNull();
    expect(iceOptionsProblem(options({ iceServers: [{ ...TURN, username: 'u', credential: 'p' }] }))).toBeNull();
    expect(iceOptionsProblem(options({ iceServers: [TURN], turnSecret: 's', turnTtlS: 1 }))).toMatch(/TURN_TTL_S/);
  });
});
