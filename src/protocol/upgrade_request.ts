import { HandshakeError } from "./errors.ts";
import { headersOf, trimOws } from "./_headers.ts";
import type { HttpRequestHead } from "./http_request_parser.ts";

/**
 * A valid WebSocket opening handshake request (RFC 6455 §4.2.1).
 *
 * @example Answering a valid request with the first subprotocol we speak
 * ```ts
 * import { computeAcceptKey, encodeAcceptResponse, HttpRequestParser, type UpgradeRequest, validateUpgradeRequest } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * function accept(request: UpgradeRequest, ours: string[]): Uint8Array {
 *   const protocol = request.protocols.find((offered) => ours.includes(offered));
 *   return encodeAcceptResponse(computeAcceptKey(request.key), protocol ? [["Sec-WebSocket-Protocol", protocol]] : []);
 * }
 * const head = new HttpRequestParser().receive(new TextEncoder().encode(
 *   "GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
 *     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
 *     "Sec-WebSocket-Protocol: v1, v2\r\n\r\n",
 * ))!;
 * const request = validateUpgradeRequest(head, "ws");
 * assert.equal(request.url.href, "ws://example.com/chat");
 * assert.match(new TextDecoder().decode(accept(request, ["v2"])), /\r\nSec-WebSocket-Protocol: v2\r\n/);
 * ```
 */
export interface UpgradeRequest {
  /** The request URL, built from the target and the `Host` header. */
  url: URL;
  /** The request's header fields. */
  headers: Headers;
  /** The client's `Sec-WebSocket-Key`. */
  key: string;
  /** The subprotocols the client offers, in its order of preference. */
  protocols: string[];
}

// base64 of exactly 16 bytes: 21 characters, one whose low bits are zero,
// then the padding (RFC 6455 §4.1: "a randomly selected 16-byte value").
const KEY = /^[A-Za-z0-9+/]{21}[AQgw]==$/;
// absolute-form (RFC 9112 §3.2.2), with its authority, which ends at the
// path, the query or the end (RFC 3986 §3.2); origin-form is any target
// starting "/".
const ABSOLUTE_FORM = /^(?:https?|wss?):\/\/([^/?]*)/i;
// A Content-Length of zero, or a list of zeros (RFC 9112 §6.3: identical
// values may be taken as one).
const NO_CONTENT_LENGTH = /^0+(?:[ \t]*,[ \t]*0+)*$/;
// Host = uri-host [ ":" port ] (RFC 9110 §7.2, RFC 3986 §3.2.2): no userinfo,
// path, query or fragment may ride along into the request URL.
const HOST =
  /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+)(?::[0-9]*)?$/;

/**
 * Checks an opening handshake request in a fixed order, one HTTP status per
 * rule (RFC 6455 §4.2.1):
 *
 * 1. method `GET`, else 405 with `Allow: GET`;
 * 2. HTTP/1.1 or later with exactly one valid `Host`, else 400;
 * 3. `Upgrade` listing `websocket`, else 426 with `Upgrade: websocket`;
 * 4. `Connection` listing `upgrade`, else 400;
 * 5. `Sec-WebSocket-Key` that is base64 of 16 bytes, else 400;
 * 6. `Sec-WebSocket-Version: 13`, else 426 with `Sec-WebSocket-Version: 13`;
 * 7. no content (no `Transfer-Encoding`, no `Content-Length` above 0), else
 *    400: the bytes after the head are frames, and bytes declared as the
 *    request's content must not pass as frames (RFC 9110 §7.8: the new
 *    protocol starts after the whole request).
 *
 * @param head The parsed request head.
 * @param scheme `ws` or `wss`, for the request URL.
 * @returns The request's URL, headers, key and offered subprotocols.
 * @throws {HandshakeError} For the first rule the request breaks.
 *
 * @example Usage
 * ```ts
 * import { validateUpgradeRequest } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const request = validateUpgradeRequest({
 *   method: "GET",
 *   target: "/chat",
 *   versionMajor: 1,
 *   versionMinor: 1,
 *   headers: [
 *     ["Host", "server.example.com"],
 *     ["Upgrade", "websocket"],
 *     ["Connection", "Upgrade"],
 *     ["Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="],
 *     ["Sec-WebSocket-Version", "13"],
 *   ],
 * }, "ws");
 * assert.equal(request.url.href, "ws://server.example.com/chat");
 * ```
 */
export function validateUpgradeRequest(
  head: HttpRequestHead,
  scheme: "ws" | "wss",
): UpgradeRequest {
  if (head.method !== "GET") {
    throw new HandshakeError(
      405,
      `Method must be GET for a WebSocket handshake, got ${head.method}`,
      { allow: "GET" },
    );
  }
  if (
    head.versionMajor < 1 || (head.versionMajor === 1 && head.versionMinor < 1)
  ) {
    throw new HandshakeError(
      400,
      `HTTP version must be 1.1 or later, got ${head.versionMajor}.${head.versionMinor}`,
    );
  }
  let host: string | undefined;
  for (let i = 0; i < head.headers.length; i++) {
    const [name, value] = head.headers[i];
    if (name.length !== 4 || name.toLowerCase() !== "host") continue;
    if (host !== undefined) {
      throw new HandshakeError(400, "Request has more than one Host header");
    }
    host = value;
  }
  if (host === undefined) {
    throw new HandshakeError(400, "Host header is missing");
  }
  const headers = headersOf(head.headers);
  let url: URL;
  try {
    if (!HOST.test(host)) throw new TypeError("Host is not valid");
    // Concatenate rather than resolve: resolving "//evil.example/" or
    // "/\\evil.example/" against the Host would replace the Host.
    if (head.target.startsWith("/")) {
      url = new URL(`${scheme}://${host}${head.target}`);
    } else if (HOST.test(ABSOLUTE_FORM.exec(head.target)?.[1] ?? "")) {
      // The connection decides the scheme, whatever the target says. The
      // authority was checked first: the URL parser would take a host from
      // "ws:///evil/x", skip the backslash of "ws://\\evil/x", and drop
      // userinfo (RFC 9110 §4.2.1, §4.2.4).
      const target = new URL(head.target);
      url = new URL(
        `${scheme}://${target.host}${target.pathname}${target.search}`,
      );
    } else {
      throw new TypeError("Request target is not in origin or absolute form");
    }
  } catch {
    throw new HandshakeError(
      400,
      `Request target ${JSON.stringify(head.target)} or Host ${
        JSON.stringify(host)
      } is not valid`,
    );
  }
  if (!hasToken(headers.get("upgrade"), "websocket")) {
    throw new HandshakeError(
      426,
      "This is a WebSocket endpoint: send Upgrade: websocket",
      { upgrade: "websocket", connection: "Upgrade" },
    );
  }
  if (!hasToken(headers.get("connection"), "upgrade")) {
    throw new HandshakeError(
      400,
      "Connection header must include the token upgrade",
    );
  }
  const key = headers.get("sec-websocket-key");
  if (key === null || !KEY.test(key)) {
    throw new HandshakeError(
      400,
      "Sec-WebSocket-Key must be the base64 encoding of 16 bytes",
    );
  }
  if (headers.get("sec-websocket-version") !== "13") {
    throw new HandshakeError(
      426,
      `Sec-WebSocket-Version must be 13, got ${
        headers.get("sec-websocket-version") ?? "none"
      }`,
      { "sec-websocket-version": "13" },
    );
  }
  const length = headers.get("content-length");
  if (
    headers.has("transfer-encoding") ||
    (length !== null && !NO_CONTENT_LENGTH.test(length))
  ) {
    throw new HandshakeError(
      400,
      "A WebSocket handshake request must not have content (Content-Length or Transfer-Encoding)",
    );
  }
  return {
    url,
    headers,
    key,
    protocols: tokenList(headers.get("sec-websocket-protocol")),
  };
}

/** Splits a comma-separated header value into its trimmed, non-empty items. */
export function tokenList(value: string | null): string[] {
  if (value === null) return [];
  return value.split(",").map(trimOws).filter((item) => item !== "");
}

function hasToken(value: string | null, token: string): boolean {
  if (value === null) return false;
  for (const item of value.split(",")) {
    if (trimOws(item).toLowerCase() === token) return true;
  }
  return false;
}
