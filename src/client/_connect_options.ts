/**
 * Every option of `connect()` (and so of `reconnecting()`, which passes
 * them on); another name is a mistake.
 */
export const CONNECT_OPTIONS: ReadonlySet<string> = new Set([
  "protocols",
  "headers",
  "signal",
  "caCerts",
  "perMessageDeflate",
  "handshakeTimeout",
  "closeTimeout",
  "maxPayload",
  "maxHeadSize",
  "maxHeaders",
  "pingInterval",
  "pongTimeout",
]);
