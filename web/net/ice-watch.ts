/**
 * What ICE did for one peer connection, in words a volunteer (and the server's
 * log) can act on: the candidates gathered, the STUN/TURN servers' refusals
 * (a wrong TURN secret is a 401), and the selected candidate pair once
 * connected. A connection that gathered no candidate at all can never
 * connect: it is given up at once instead of waiting for the timeout.
 */
import type { IceTransportPolicy } from '../../shared/protocol/messages.js';

/** What a STUN or TURN server answered when a candidate could not be gathered from it. */
export interface IceServerError {
  readonly url: string;
  readonly code: number;
  readonly text: string;
}

/** ICE so far on one connection: the inputs of `describeIce` and `hopeless`. */
export interface IceObservation {
  readonly policy: IceTransportPolicy;
  /** Local candidates gathered, by type (host, srflx, prflx, relay). */
  readonly candidates: Readonly<Record<string, number>>;
  readonly errors: readonly IceServerError[];
  /** RTCIceGatheringState and RTCIceConnectionState. */
  readonly gathering: string;
  readonly connection: string;
}

/** The candidate pair a connected data channel uses: candidate types (relay = through TURN) and the transport. */
export interface SelectedPair {
  readonly local: string;
  readonly remote: string;
  /** udp or tcp between this browser and the first hop. */
  readonly protocol: string | null;
  /** For a relay candidate: how this browser reaches the TURN server (udp, tcp, tls). */
  readonly relayProtocol: string | null;
}

/**
 * The code of the error a connection is destroyed with when it gathered no
 * candidate: opening it again with the same servers cannot help.
 */
export const ERR_ICE_NO_CANDIDATES = 'ERR_ICE_NO_CANDIDATES';

/** Server errors kept per connection (the latest distinct ones). */
const MAX_ERRORS = 4;

/** A connection whose gathering ended with no local candidate: no pair can ever form. */
export function hopeless(o: IceObservation): boolean {
  return o.gathering === 'complete' && Object.values(o.candidates).every((n) => n === 0);
}

/** One line naming ICE and, where TURN is involved, TURN: what was gathered and what the servers said. */
export function describeIce(o: IceObservation): string {
  const gathered = Object.entries(o.candidates)
    .filter(([, n]) => n > 0)
    .map(([type, n]) => `${n} ${type}`);
  const parts = [
    gathered.length === 0
      ? o.policy === 'relay'
        ? 'no relay candidate from the TURN servers'
        : 'no candidate gathered'
      : `candidates ${gathered.join(', ')}`,
    `gathering ${o.gathering}, connection ${o.connection}`,
    ...o.errors.map((e) => `${e.url.startsWith('turn') ? 'TURN' : 'STUN'} ${e.url} answered ${e.code} ${e.text}`.trim()),
  ];
  if (o.errors.some((e) => e.code === 401)) parts.push('TURN credentials refused (check TURN_SECRET against the TURN server)');
  return `ICE (${o.policy === 'relay' ? 'relay only' : 'any candidate'}): ${parts.join('; ')}`;
}

/** Watches a peer connection's ICE; `onHopeless` is called once when it can never connect. */
export class IceWatch {
  private readonly candidates: Record<string, number> = {};
  private readonly errors: IceServerError[] = [];
  private givenUp = false;

  constructor(
    private readonly pc: RTCPeerConnection,
    private readonly policy: IceTransportPolicy,
    onHopeless: (why: string) => void,
  ) {
    pc.addEventListener('icecandidate', (e) => {
      const type = e.candidate?.type;
      if (type != null) this.candidates[type] = (this.candidates[type] ?? 0) + 1;
    });
    pc.addEventListener('icecandidateerror', (e) => {
      const error = { url: e.url, code: e.errorCode, text: e.errorText.replace(/\.$/, '') };
      const seen = this.errors.findIndex((x) => x.url === error.url && x.code === error.code);
      if (seen !== -1) this.errors.splice(seen, 1);
      this.errors.push(error);
      if (this.errors.length > MAX_ERRORS) this.errors.shift();
    });
    pc.addEventListener('icegatheringstatechange', () => {
      const o = this.observation();
      if (this.givenUp || !hopeless(o)) return;
      this.givenUp = true;
      onHopeless(describeIce(o));
    });
  }

  observation(): IceObservation {
    return {
      policy: this.policy,
      candidates: { ...this.candidates },
      errors: [...this.errors],
      gathering: this.pc.iceGatheringState,
      connection: this.pc.iceConnectionState,
    };
  }

  describe(): string {
    return describeIce(this.observation());
  }
}

/** A field of a stats record, when it is a string. */
function text(record: unknown, key: string): string | null {
  const v = typeof record === 'object' && record !== null ? (record as Record<string, unknown>)[key] : undefined;
  return typeof v === 'string' ? v : null;
}

/**
 * The selected candidate pair (getStats: the transport's selectedCandidatePairId,
 * else the nominated pair that succeeded), or null before there is one.
 */
export async function selectedPair(pc: RTCPeerConnection): Promise<SelectedPair | null> {
  const stats = await pc.getStats();
  const records: unknown[] = [...stats.values()];
  let pairId: string | null = null;
  for (const r of records) if (text(r, 'type') === 'transport') pairId ??= text(r, 'selectedCandidatePairId');
  const pair =
    (pairId === null ? undefined : (stats.get(pairId) as unknown)) ??
    records.find(
      (r) => text(r, 'type') === 'candidate-pair' && (r as { nominated?: unknown }).nominated === true && text(r, 'state') === 'succeeded',
    );
  if (pair === undefined) return null;
  const localId = text(pair, 'localCandidateId');
  const remoteId = text(pair, 'remoteCandidateId');
  const local: unknown = localId === null ? undefined : stats.get(localId);
  const remote: unknown = remoteId === null ? undefined : stats.get(remoteId);
  return {
    local: text(local, 'candidateType') ?? 'unknown',
    remote: text(remote, 'candidateType') ?? 'unknown',
    protocol: text(local, 'protocol'),
    relayProtocol: text(local, 'relayProtocol'),
  };
}

/** Data-channel messages sent and received on a connection, over all its channels (getStats' data-channel records). */
export async function channelMessages(pc: RTCPeerConnection): Promise<{ sent: number; received: number }> {
  const stats = await pc.getStats();
  let sent = 0;
  let received = 0;
  for (const r of stats.values() as Iterable<unknown>) {
    if (text(r, 'type') !== 'data-channel') continue;
    const { messagesSent, messagesReceived } = r as { messagesSent?: unknown; messagesReceived?: unknown };
    if (typeof messagesSent === 'number') sent += messagesSent;
    if (typeof messagesReceived === 'number') received += messagesReceived;
  }
  return { sent, received };
}
