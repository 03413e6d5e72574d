/** Bumped on any incompatible change of the events or frames; checked in the Socket.IO handshake. */
export const PROTOCOL_VERSION = 10;
