import { CLOSE_CODE, PROTOCOL_ERROR_CODE, ProtocolError } from "./errors.ts";
import { describe } from "./_describe.ts";

/**
 * The code and reason carried by a close frame.
 *
 * @example A close frame's code and reason, there and back
 * ```ts
 * import { type ClosePayload, encodeClosePayload, parseClosePayload } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const payload: ClosePayload = { code: 4001, reason: "session expired" };
 * assert.deepEqual(parseClosePayload(encodeClosePayload(payload.code, payload.reason)), payload);
 * // A close frame without a payload stands for 1005.
 * assert.deepEqual(parseClosePayload(new Uint8Array(0)), { code: 1005, reason: "" });
 * ```
 */
export interface ClosePayload {
  /** The status code; 1005 when the frame carried none. */
  code: number;
  /** The UTF-8 reason; empty when none. */
  reason: string;
}

/**
 * Whether `code` may appear in a close frame (RFC 6455 §7.4): 1000-1003,
 * 1007-1014 from the IANA registry, and 3000-4999 for libraries and
 * applications. 1004, 1005, 1006 and 1015 are reserved and never sent.
 *
 * @param code The status code to check.
 * @returns `true` when the code may be sent and received.
 *
 * @example Usage
 * ```ts
 * import { isValidCloseCode } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * assert.equal(isValidCloseCode(1000), true);
 * assert.equal(isValidCloseCode(1005), false);
 * assert.equal(isValidCloseCode(4000), true);
 * ```
 */
export function isValidCloseCode(code: number): boolean {
  return Number.isInteger(code) &&
    ((code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 &&
      code !== 1006) || (code >= 3000 && code <= 4999));
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const utf8 = new TextEncoder();
const NO_BYTES = new Uint8Array(0);

/**
 * Decodes the payload of a received close frame (RFC 6455 §5.5.1).
 *
 * @param data The unmasked payload, 0 to 125 bytes.
 * @returns The code (1005 for an empty payload) and reason.
 * @throws {ProtocolError} `INVALID_CLOSE_PAYLOAD` for a 1-byte payload,
 * `INVALID_CLOSE_CODE` for a code that may not be sent, `INVALID_UTF8` for a
 * reason that is not UTF-8.
 *
 * @example Usage
 * ```ts
 * import { parseClosePayload } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const { code, reason } = parseClosePayload(new Uint8Array([0x03, 0xe8, 0x6f, 0x6b]));
 * assert.equal(code, 1000);
 * assert.equal(reason, "ok");
 * ```
 */
export function parseClosePayload(data: Uint8Array): ClosePayload {
  if (data.length === 0) {
    return { code: CLOSE_CODE.NoStatusReceived, reason: "" };
  }
  if (data.length === 1) {
    throw new ProtocolError(
      PROTOCOL_ERROR_CODE.InvalidClosePayload,
      "Close frame payload of 1 byte cannot hold a status code (RFC 6455 §5.5.1)",
    );
  }
  const code = (data[0] << 8) | data[1];
  if (!isValidCloseCode(code)) {
    throw new ProtocolError(
      PROTOCOL_ERROR_CODE.InvalidCloseCode,
      `Close code ${code} may not be sent (RFC 6455 §7.4)`,
    );
  }
  if (data.length === 2) return { code, reason: "" }; // the common case
  let reason: string;
  try {
    reason = strictUtf8.decode(data.subarray(2));
  } catch {
    throw new ProtocolError(
      PROTOCOL_ERROR_CODE.InvalidUtf8,
      "Close reason is not valid UTF-8 (RFC 6455 §5.5.1)",
    );
  }
  return { code, reason };
}

/**
 * Encodes a close frame payload, checking what the caller asked for.
 *
 * @param code A code that {@linkcode isValidCloseCode} accepts, or
 * `undefined` for an empty payload.
 * @param reason At most 123 bytes of UTF-8; needs a code.
 * @returns The payload bytes.
 * @throws {RangeError} When the code may not be sent or the reason is too long.
 * @throws {TypeError} When a reason is given without a code.
 *
 * @example Usage
 * ```ts
 * import { encodeClosePayload } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(encodeClosePayload(1000, "ok"), new Uint8Array([0x03, 0xe8, 0x6f, 0x6b]));
 * assert.deepEqual(encodeClosePayload(undefined), new Uint8Array(0));
 * ```
 */
export function encodeClosePayload(
  code: number | undefined,
  reason = "",
): Uint8Array<ArrayBuffer> {
  if (typeof reason !== "string") {
    throw new TypeError(
      `Cannot close: "reason" must be a string, got ${describe(reason)}`,
    );
  }
  if (code === undefined) {
    if (reason !== "") {
      throw new TypeError(
        "Cannot close: a reason needs a code, got a reason without one",
      );
    }
    return new Uint8Array(0);
  }
  if (!isValidCloseCode(code)) {
    throw new RangeError(
      `Cannot close: "code" must be 1000-1003, 1007-1014 or 3000-4999, got ${
        typeof code === "number" ? code : describe(code)
      }`,
    );
  }
  const reasonBytes = reason === "" ? NO_BYTES : utf8.encode(reason);
  if (reasonBytes.length > 123) {
    throw new RangeError(
      `Cannot close: "reason" must be at most 123 bytes of UTF-8, got ${reasonBytes.length}`,
    );
  }
  const payload = new Uint8Array(2 + reasonBytes.length);
  payload[0] = code >> 8;
  payload[1] = code & 0xff;
  payload.set(reasonBytes, 2);
  return payload;
}
