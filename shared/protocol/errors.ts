/**
 * Error codes that travel on the wire: a closed union, never free text alone.
 * Among them: ERR_BUSY (the swarm has no room for another session now: try
 * again after the Retry-After), ERR_REPLICA_FULL (a replica cannot keep another
 * session open), ERR_CHALLENGE_FAILED (a volunteer's answer to a challenge step
 * was wrong or late), ERR_EQUIVOCATION (a replica's frames to the next stage
 * differ from what it reported to the coordinator), ERR_INTERNAL (a failure of
 * the server itself, the same over Socket.IO and HTTP: the details stay in the
 * server's log), ERR_CAPACITY (a volunteer whose reported capacity holds no
 * stage of the partition served now), ERR_FOREIGN_ORIGIN (a web page of
 * another site tried to connect as a volunteer).
 */
export const WIRE_ERROR_CODES = [
  'ERR_PROTOCOL_VERSION',
  'ERR_BAD_HANDSHAKE',
  'ERR_BAD_MESSAGE',
  'ERR_NOT_LINKED',
  'ERR_NOT_ASSIGNED',
  'ERR_UNKNOWN_SESSION',
  'ERR_RATE_LIMITED',
  'ERR_NO_QUORUM',
  'ERR_NO_ROUTE',
  'ERR_STEP_TIMEOUT',
  'ERR_BAD_REQUEST',
  'ERR_FAULTS_REFUSED',
  'ERR_EVICTED',
  'ERR_BANNED',
  'ERR_SHUTTING_DOWN',
  'ERR_CANCELLED',
  'ERR_UNAUTHORIZED',
  'ERR_BUSY',
  'ERR_REPLICA_FULL',
  'ERR_CHALLENGE_FAILED',
  'ERR_EQUIVOCATION',
  'ERR_COMPUTE',
  'ERR_INTERNAL',
  'ERR_CAPACITY',
  'ERR_FOREIGN_ORIGIN',
] as const;

export type WireErrorCode = (typeof WIRE_ERROR_CODES)[number];

export function isWireErrorCode(v: unknown): v is WireErrorCode {
  return typeof v === 'string' && (WIRE_ERROR_CODES as readonly string[]).includes(v);
}

export interface WireError {
  readonly code: WireErrorCode;
  readonly message: string;
}
