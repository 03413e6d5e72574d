/**
 * The ICE servers volunteers are handed: the deployment's STUN/TURN servers
 * (ICE_SERVERS), short-lived TURN credentials made with coturn's REST-API
 * scheme (TURN_SECRET, `use-auth-secret`), and the transport policy. Pure:
 * the clock is passed in. Nothing here logs, and no error quotes a secret,
 * a user name or a credential.
 */
import { createHmac } from 'node:crypto';
import type { IceConfig, IceServer, IceTransportPolicy } from '../shared/protocol/messages.js';
import { isTurnUrl, parseIceServers } from '../shared/protocol/validate.js';

/** Default lifetime of TURN credentials made with TURN_SECRET: one hour. */
export const DEFAULT_TURN_TTL_S = 3600;
/** The longest TURN credential lifetime (a week): renewed at half of it by a timer, which Node caps at 2^31 ms. */
export const MAX_TURN_TTL_S = 7 * 24 * 3600;

export interface IceOptions {
  /** STUN and TURN servers, as configured (static credentials, if any, are passed on as they are). */
  readonly iceServers: readonly IceServer[];
  /**
   * coturn's `static-auth-secret`: when set, every server with a TURN URL gets
   * a user name and credential made for the volunteer, valid `turnTtlS`.
   */
  readonly turnSecret: string | null;
  readonly turnTtlS: number;
  readonly transportPolicy: IceTransportPolicy;
}

/** No STUN, no TURN, any candidate: peers reach each other on one host or LAN (the default). */
export const LOCAL_ICE: IceOptions = { iceServers: [], turnSecret: null, turnTtlS: DEFAULT_TURN_TTL_S, transportPolicy: 'all' };

const hasTurn = (s: IceServer) => s.urls.some(isTurnUrl);

/**
 * ICE_SERVERS's value (JSON) as servers; `from` names the setting in the
 * error. The value itself is never quoted: it may hold TURN passwords.
 */
export function parseIceServersSetting(json: string, from: string): IceServer[] {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (e) {
    // Where, never what: the parser's message quotes the text around the fault, which may be a credential.
    const at = /position (\d+)/.exec((e as Error).message)?.[1];
    throw new Error(
      `${from} must be JSON (a list of {urls, username?, credential?}); it does not parse${at === undefined ? '' : ` at character ${at}`} (the value is not shown: it may hold a password)`,
    );
  }
  const servers = parseIceServers(raw);
  if (!servers.ok) throw new Error(`${from} ${servers.reason}`);
  return servers.value;
}

/**
 * Why these options cannot work, or null: a relay-only policy without a TURN
 * server, a secret with no TURN server to use it, or a TURN server with
 * neither credentials nor a secret (a browser refuses such a server).
 */
export function iceOptionsProblem(o: IceOptions): string | null {
  const turn = o.iceServers.some(hasTurn);
  if (o.transportPolicy === 'relay' && !turn) return 'ICE_TRANSPORT_POLICY=relay needs a turn: or turns: URL in ICE_SERVERS';
  if (o.turnSecret !== null && !turn) return 'TURN_SECRET is set but ICE_SERVERS has no turn: or turns: URL to use it with';
  if (o.turnSecret === null) {
    const bare = o.iceServers.findIndex((s) => hasTurn(s) && (s.username === undefined || s.credential === undefined));
    if (bare !== -1) return `ICE_SERVERS server ${bare + 1} has a TURN URL but no username and credential, and TURN_SECRET is not set`;
  }
  if (!Number.isFinite(o.turnTtlS) || o.turnTtlS < 2) return `TURN_TTL_S must be at least 2 seconds, got ${o.turnTtlS}`;
  return null;
}

/**
 * coturn's TURN REST-API credentials (`use-auth-secret`): the user name is
 * `expiry:volunteerId` (expiry in Unix seconds), the password
 * base64(HMAC-SHA1(secret, user name)). coturn recomputes the password from
 * the user name and refuses it after the expiry.
 */
export function turnCredentials(secret: string, volunteerId: string, expiresAtS: number): { username: string; credential: string } {
  const username = `${expiresAtS}:${volunteerId}`;
  return { username, credential: createHmac('sha1', secret).update(username).digest('base64') };
}

/** What one volunteer is sent at `nowMs`: with a secret, credentials valid until `nowMs` + TTL on every TURN server. */
export function iceConfigFor(o: IceOptions, volunteerId: string, nowMs: number): IceConfig {
  const secret = o.turnSecret;
  const iceServers =
    secret === null
      ? o.iceServers
      : o.iceServers.map((s) =>
          hasTurn(s) ? { urls: s.urls, ...turnCredentials(secret, volunteerId, Math.floor(nowMs / 1000) + o.turnTtlS) } : s,
        );
  return { iceServers, iceTransportPolicy: o.transportPolicy };
}

/** Whether the configuration must be sent again before it expires: TURN credentials made with a secret. */
export function renews(o: IceOptions): boolean {
  return o.turnSecret !== null && o.iceServers.some(hasTurn);
}
