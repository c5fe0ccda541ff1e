/**
 * Errors raised by the protocol core for things the *peer* did wrong.
 *
 * Caller mistakes (bad options, calls on a closed `Connection`) are reported
 * with the built-in `TypeError` / `RangeError`; these two classes carry what goes
 * on the wire instead: a close code for a frame-level failure, an HTTP status
 * for a rejected opening handshake.
 *
 * @module
 */

/**
 * Close status codes from RFC 6455 §7.4.1 (and the IANA registry).
 *
 * @example Usage
 * ```ts
 * import { CLOSE_CODE } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * assert.equal(CLOSE_CODE.ProtocolError, 1002);
 * ```
 */
export const CLOSE_CODE = {
  /** The purpose for which the connection was established has been fulfilled. */
  NormalClosure: 1000,
  /** The endpoint is going away (server shutdown, page navigation). */
  GoingAway: 1001,
  /** The peer broke the protocol. */
  ProtocolError: 1002,
  /** The endpoint cannot accept this type of data. */
  UnsupportedData: 1003,
  /** Reserved: the close frame carried no status code. Never sent. */
  NoStatusReceived: 1005,
  /** Reserved: the connection closed without a close frame. Never sent. */
  AbnormalClosure: 1006,
  /** A text message or close reason was not valid UTF-8. */
  InvalidPayload: 1007,
  /** A message violated the endpoint's policy. */
  PolicyViolation: 1008,
  /** A message was larger than the endpoint accepts. */
  MessageTooBig: 1009,
  /** The client expected an extension the server did not negotiate. */
  MandatoryExtension: 1010,
  /** The server hit an unexpected condition. */
  InternalError: 1011,
  /** The server is restarting. */
  ServiceRestart: 1012,
  /** The server is overloaded; try again later. */
  TryAgainLater: 1013,
} as const;

/**
 * A close status code from {@linkcode CLOSE_CODE}.
 *
 * @example Close codes worth reconnecting after
 * ```ts
 * import { CLOSE_CODE, type CloseCode, type CloseInfo } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * // The server is going away, restarting or overloaded: come back later.
 * const comeBack: readonly CloseCode[] = [CLOSE_CODE.GoingAway, CLOSE_CODE.ServiceRestart, CLOSE_CODE.TryAgainLater];
 * const shouldReconnect = ({ code }: CloseInfo) => (comeBack as readonly number[]).includes(code);
 * assert.equal(shouldReconnect({ code: 1012, reason: "", wasClean: true }), true);
 * assert.equal(shouldReconnect({ code: CLOSE_CODE.PolicyViolation, reason: "", wasClean: true }), false);
 * ```
 */
export type CloseCode = typeof CLOSE_CODE[keyof typeof CLOSE_CODE];

/**
 * Stable identifiers for every way a peer can break RFC 6455.
 *
 * @example Usage
 * ```ts
 * import { PROTOCOL_ERROR_CODE } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * assert.equal(PROTOCOL_ERROR_CODE.UnmaskedFrame, "UNMASKED_FRAME");
 * ```
 */
export const PROTOCOL_ERROR_CODE = {
  /** A client frame arrived without a mask (RFC 6455 §5.1). */
  UnmaskedFrame: "UNMASKED_FRAME",
  /** A server frame arrived with a mask (RFC 6455 §5.1). */
  MaskedFrame: "MASKED_FRAME",
  /** RSV1-3 set without a negotiated extension (RFC 6455 §5.2). */
  ReservedBits: "RESERVED_BITS",
  /** Opcode 3-7 or 0xB-0xF (RFC 6455 §5.2). */
  ReservedOpcode: "RESERVED_OPCODE",
  /** A control frame with FIN clear (RFC 6455 §5.5). */
  FragmentedControlFrame: "FRAGMENTED_CONTROL_FRAME",
  /** A control frame with more than 125 bytes of payload (RFC 6455 §5.5). */
  ControlFrameTooLong: "CONTROL_FRAME_TOO_LONG",
  /** A continuation frame with no message to continue (RFC 6455 §5.4). */
  UnexpectedContinuation: "UNEXPECTED_CONTINUATION",
  /** A new text/binary frame while a fragmented message is open (RFC 6455 §5.4). */
  ExpectedContinuation: "EXPECTED_CONTINUATION",
  /** A 64-bit payload length with the most significant bit set (RFC 6455 §5.2). */
  InvalidLength: "INVALID_LENGTH",
  /** A text message or close reason that is not valid UTF-8 (RFC 6455 §8.1). */
  InvalidUtf8: "INVALID_UTF8",
  /** A close frame with a one-byte payload (RFC 6455 §5.5.1). */
  InvalidClosePayload: "INVALID_CLOSE_PAYLOAD",
  /** A close frame carrying a code that may not be sent (RFC 6455 §7.4). */
  InvalidCloseCode: "INVALID_CLOSE_CODE",
  /** A compressed message that is not valid raw DEFLATE data (RFC 7692 §7.2.2). */
  InvalidCompressedData: "INVALID_COMPRESSED_DATA",
  /** A message larger than `maxPayload`. */
  MessageTooBig: "MESSAGE_TOO_BIG",
  /** A message split into more than `maxFragments` frames. */
  TooManyFragments: "TOO_MANY_FRAGMENTS",
  /**
   * A frame or message that did not arrive whole in the time the driver
   * allows (the server's `messageTimeout`); see `Connection.fail()`.
   */
  MessageTimeout: "MESSAGE_TIMEOUT",
} as const;

/**
 * One of the {@linkcode PROTOCOL_ERROR_CODE} values.
 *
 * @example Counting peer mistakes by their stable code
 * ```ts
 * import { Connection, type ProtocolErrorCode } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const counts = new Map<ProtocolErrorCode, number>();
 * const connection = new Connection({ role: "server" });
 * connection.receive(new Uint8Array([0x81, 0x00])); // a client's frame without a mask
 * for (const event of connection.takeEvents()) {
 *   if (event.type === "error") counts.set(event.error.code, (counts.get(event.error.code) ?? 0) + 1);
 * }
 * assert.deepEqual([...counts], [["UNMASKED_FRAME", 1]]);
 * ```
 */
export type ProtocolErrorCode =
  typeof PROTOCOL_ERROR_CODE[keyof typeof PROTOCOL_ERROR_CODE];

const CLOSE_CODE_FOR: Record<ProtocolErrorCode, number> = {
  UNMASKED_FRAME: CLOSE_CODE.ProtocolError,
  MASKED_FRAME: CLOSE_CODE.ProtocolError,
  RESERVED_BITS: CLOSE_CODE.ProtocolError,
  RESERVED_OPCODE: CLOSE_CODE.ProtocolError,
  FRAGMENTED_CONTROL_FRAME: CLOSE_CODE.ProtocolError,
  CONTROL_FRAME_TOO_LONG: CLOSE_CODE.ProtocolError,
  UNEXPECTED_CONTINUATION: CLOSE_CODE.ProtocolError,
  EXPECTED_CONTINUATION: CLOSE_CODE.ProtocolError,
  INVALID_LENGTH: CLOSE_CODE.ProtocolError,
  INVALID_UTF8: CLOSE_CODE.InvalidPayload,
  INVALID_CLOSE_PAYLOAD: CLOSE_CODE.ProtocolError,
  INVALID_CLOSE_CODE: CLOSE_CODE.ProtocolError,
  INVALID_COMPRESSED_DATA: CLOSE_CODE.InvalidPayload,
  MESSAGE_TOO_BIG: CLOSE_CODE.MessageTooBig,
  TOO_MANY_FRAGMENTS: CLOSE_CODE.MessageTooBig,
  MESSAGE_TIMEOUT: CLOSE_CODE.PolicyViolation,
};

/**
 * The peer broke RFC 6455, or a limit (`maxPayload`, `maxFragments`, a
 * driver's deadline for a message); the connection is failed with
 * {@linkcode closeCode}.
 *
 * @example Usage
 * ```ts
 * import { ProtocolError } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const error = new ProtocolError("INVALID_UTF8", "Text message is not valid UTF-8");
 * assert.equal(error.closeCode, 1007);
 * ```
 */
export class ProtocolError extends Error {
  /** What went wrong, as a stable identifier. */
  readonly code: ProtocolErrorCode;
  /** The close code sent to the peer: 1002, 1007, 1008 or 1009. */
  readonly closeCode: number;

  /**
   * Creates a protocol error; the close code follows from `code`.
   *
   * @param code What went wrong.
   * @param message A sentence for logs (never sent to the peer).
   */
  constructor(code: ProtocolErrorCode, message: string) {
    super(message);
    this.name = "ProtocolError";
    this.code = code;
    this.closeCode = CLOSE_CODE_FOR[code];
  }
}

/**
 * An opening handshake the server refuses, with the HTTP status to answer.
 *
 * @example Usage
 * ```ts
 * import { HandshakeError } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const error = new HandshakeError(405, "Method must be GET, got POST", { allow: "GET" });
 * assert.equal(error.status, 405);
 * assert.equal(error.headers.allow, "GET");
 * ```
 */
export class HandshakeError extends Error {
  /** The HTTP status code of the rejection (400, 403, 405, 426, 431, ...). */
  readonly status: number;
  /** Extra response headers, such as `Allow` or `Sec-WebSocket-Version`. */
  readonly headers: Readonly<Record<string, string>>;

  /**
   * Creates a handshake rejection.
   *
   * @param status The HTTP status code to answer with.
   * @param message A short sentence that becomes the plain-text response body.
   * @param headers Extra response headers.
   */
  constructor(
    status: number,
    message: string,
    headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = "HandshakeError";
    this.status = status;
    this.headers = headers;
  }
}
