/** Error codes that travel on the wire: a closed union, never free text alone. */
export type WireErrorCode =
  | 'ERR_PROTOCOL_VERSION'
  | 'ERR_BAD_HANDSHAKE'
  | 'ERR_BAD_MESSAGE'
  | 'ERR_NOT_LINKED'
  | 'ERR_NOT_ASSIGNED'
  | 'ERR_UNKNOWN_SESSION'
  | 'ERR_RATE_LIMITED'
  | 'ERR_NO_QUORUM'
  | 'ERR_NO_ROUTE'
  | 'ERR_STEP_TIMEOUT'
  | 'ERR_BAD_REQUEST'
  | 'ERR_FAULTS_REFUSED'
  | 'ERR_EVICTED'
  | 'ERR_BANNED'
  | 'ERR_SHUTTING_DOWN'
  | 'ERR_CANCELLED'
  | 'ERR_UNAUTHORIZED';

export interface WireError {
  readonly code: WireErrorCode;
  readonly message: string;
}
