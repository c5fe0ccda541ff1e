import type { HandshakeError } from "./errors.ts";
import { encodeLatin1 } from "./_bytes.ts";
import { sha1Base64 } from "./_sha1.ts";

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const utf8 = new TextEncoder();
// RFC 9110 §5.1, §5.5: a field name is a token; a value has no CR, LF or
// NUL (which would end the field, or the head, early: response splitting).
const FIELD_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

// Fields that frame a rejection, which sets them itself; the connection
// options it may carry besides its own close.
const FRAMING = /^(?:content-length|transfer-encoding)$/i;
const CONNECTION_OPTIONS =
  /^\s*(?:close|upgrade)\s*(?:,\s*(?:close|upgrade)\s*)*$/i;

/** `name: value\r\n`, or a TypeError for a field that would break the head. */
function field(name: string, value: string): string {
  if (typeof name !== "string" || !FIELD_NAME.test(name)) {
    throw new TypeError(
      `Cannot encode a response: the header name ${
        JSON.stringify(name)
      } is not an HTTP token`,
    );
  }
  if (typeof value !== "string" || !FIELD_VALUE.test(value)) {
    throw new TypeError(
      `Cannot encode a response: the value of ${name} has a character a header may not hold (CR, LF, NUL or another control character): ${
        JSON.stringify(String(value).slice(0, 100))
      }`,
    );
  }
  return `${name}: ${value}\r\n`;
}

/**
 * Computes `Sec-WebSocket-Accept` for a client's key (RFC 6455 §4.2.2):
 * base64(SHA-1(key + GUID)), computed on the spot (see `_sha1.ts` for why
 * not with `crypto.subtle`, which is asynchronous).
 *
 * @param key The client's `Sec-WebSocket-Key`.
 * @returns The accept value.
 *
 * @example The RFC 6455 §1.3 sample
 * ```ts
 * import { computeAcceptKey } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * assert.equal(computeAcceptKey("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
 * ```
 */
export function computeAcceptKey(key: string): string {
  return sha1Base64(key + GUID);
}

/**
 * Encodes the `101 Switching Protocols` response that completes a handshake.
 *
 * @param accept The `Sec-WebSocket-Accept` value.
 * @param headers Extra headers (`Sec-WebSocket-Protocol`, cookies, ...).
 * @returns The response bytes.
 * @throws {TypeError} When a header name is not a token, or a value holds
 * CR, LF, NUL or another control character (it would split the response).
 *
 * @example Usage
 * ```ts
 * import { encodeAcceptResponse } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const text = new TextDecoder().decode(encodeAcceptResponse("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
 * assert.ok(text.startsWith("HTTP/1.1 101 Switching Protocols\r\n"));
 * assert.ok(text.endsWith("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"));
 * ```
 */
export function encodeAcceptResponse(
  accept: string,
  headers: Iterable<[string, string]> = [],
): Uint8Array {
  let head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n" +
    "Connection: Upgrade\r\n";
  for (const [name, value] of headers) head += field(name, value);
  return encodeLatin1(`${head}Sec-WebSocket-Accept: ${accept}\r\n\r\n`);
}

const REASON: Record<number, string> = {
  400: "Bad Request",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  414: "URI Too Long",
  426: "Upgrade Required",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  503: "Service Unavailable",
};

/** Options of {@linkcode encodeRejectionResponse}. */
export interface RejectionResponseOptions {
  /**
   * The request was a `HEAD`: the response has no content (RFC 9110
   * §9.3.2), and no `Content-Length` (a `GET` would be refused otherwise).
   * @default {false}
   */
  head?: boolean;
  /**
   * The response's `Date` (RFC 9110 §6.6.1: an origin server with a clock
   * MUST send one with a 4xx).
   * @default {new Date()}
   */
  date?: Date;
}

/**
 * Encodes the plain-text response that rejects a handshake; it asks the
 * client to close the connection.
 *
 * @param error The rejection: status, headers, and the body sentence.
 * @param options Whether the request was a `HEAD`, and the response date.
 * @returns The response bytes.
 * @throws {TypeError} When a header of `error` would break the head (see
 * {@linkcode encodeAcceptResponse}) or frame the response (`Content-Length`,
 * `Transfer-Encoding`, a `Connection` with options other than `close` and
 * `upgrade`: the rejection sets its own), or its status is not a final one
 * with a body (200-599 but 204 and 304). A `Content-Type` or `Date` of its
 * own replaces the rejection's.
 *
 * @example Usage
 * ```ts
 * import { encodeRejectionResponse, HandshakeError } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const bytes = encodeRejectionResponse(new HandshakeError(400, "Host header is missing"));
 * assert.ok(new TextDecoder().decode(bytes).startsWith("HTTP/1.1 400 Bad Request\r\n"));
 * ```
 */
export function encodeRejectionResponse(
  error: HandshakeError,
  options: RejectionResponseOptions = {},
): Uint8Array {
  const { status } = error;
  // (204 and 304 responses have no body: RFC 9110 §15.3.5, §15.4.5.)
  if (
    !Number.isInteger(status) || status < 200 || status > 599 ||
    status === 204 || status === 304
  ) {
    throw new TypeError(
      `Cannot encode a rejection: its status must be a final one that has a body (200-599 but 204 and 304), got ${status}`,
    );
  }
  for (const [name, value] of Object.entries(error.headers)) {
    if (
      FRAMING.test(name) ||
      (/^connection$/i.test(name) && !CONNECTION_OPTIONS.test(value))
    ) {
      throw new TypeError(
        `Cannot encode a rejection: ${name} is the response's own (it closes the connection after a body of the length it sets)`,
      );
    }
  }
  const body = options.head
    ? new Uint8Array(0)
    : utf8.encode(`${error.message}\n`);
  // (A Content-Type or Date among the rejection's own headers is the one
  // sent: a field that may appear once.)
  const own = (pattern: RegExp) =>
    Object.keys(error.headers).some((name) => pattern.test(name));
  let head = `HTTP/1.1 ${error.status} ${REASON[error.status] ?? "Error"}\r\n` +
    (own(/^content-type$/i)
      ? ""
      : "Content-Type: text/plain; charset=utf-8\r\n") +
    (options.head ? "" : `Content-Length: ${body.length}\r\n`) +
    "Connection: close\r\n";
  if (!own(/^date$/i)) {
    head += `Date: ${(options.date ?? new Date()).toUTCString()}\r\n`;
  }
  for (const [name, value] of Object.entries(error.headers)) {
    head += field(name, value);
  }
  const headBytes = encodeLatin1(`${head}\r\n`);
  const bytes = new Uint8Array(headBytes.length + body.length);
  bytes.set(headBytes);
  bytes.set(body, headBytes.length);
  return bytes;
}
