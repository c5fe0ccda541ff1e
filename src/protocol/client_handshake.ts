import { computeAcceptKey } from "./handshake_response.ts";
import { trimOws } from "./_headers.ts";
import { quoted, shown } from "./_describe.ts";
import { concat, decodeLatin1, encodeLatin1, findHeadEnd } from "./_bytes.ts";
import {
  DEFAULT_MAX_HEAD_SIZE,
  DEFAULT_MAX_HEADERS,
} from "./http_request_parser.ts";
import { tokenList } from "./upgrade_request.ts";
import {
  type ClientDeflateOptions,
  type PerMessageDeflateParams,
  resolveClientDeflateOptions,
} from "./permessage_deflate.ts";
import { acceptClientDeflate, clientDeflateOffer } from "./_client_deflate.ts";

/**
 * Stable identifiers for every way a server's handshake response can fail
 * the client's checks (RFC 6455 §4.1).
 *
 * @example Usage
 * ```ts
 * import { CLIENT_HANDSHAKE_ERROR_CODE } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * assert.equal(CLIENT_HANDSHAKE_ERROR_CODE.InvalidAccept, "INVALID_ACCEPT");
 * ```
 */
export const CLIENT_HANDSHAKE_ERROR_CODE = {
  /** The status was not 101; `status` and `body` say what the server sent. */
  UnexpectedStatus: "UNEXPECTED_STATUS",
  /**
   * The status line or a header field could not be parsed, the status was
   * not in 100-599, or the connection ended after bytes that cannot start a
   * status line (not an HTTP server; TLS from a `ws:` URL's server).
   */
  MalformedResponse: "MALFORMED_RESPONSE",
  /** The response head was over `maxHeadSize` bytes or `maxHeaders` fields. */
  ResponseTooLarge: "RESPONSE_TOO_LARGE",
  /** `Upgrade` was missing or not `websocket`. */
  InvalidUpgrade: "INVALID_UPGRADE",
  /** `Connection` was missing or did not list `upgrade`. */
  InvalidConnection: "INVALID_CONNECTION",
  /** `Sec-WebSocket-Accept` was missing or did not match the key. */
  InvalidAccept: "INVALID_ACCEPT",
  /** `Sec-WebSocket-Protocol` named a subprotocol the client did not offer. */
  UnexpectedProtocol: "UNEXPECTED_PROTOCOL",
  /** `Sec-WebSocket-Extensions` was present though the client offered none. */
  UnexpectedExtension: "UNEXPECTED_EXTENSION",
  /**
   * The connection ended before the response head was complete, with
   * nothing or the start of a status line received.
   */
  ConnectionClosed: "CONNECTION_CLOSED",
} as const;

/**
 * One of the {@linkcode CLIENT_HANDSHAKE_ERROR_CODE} values.
 *
 * @example Retrying only the rejections that may pass later
 * ```ts
 * import { ClientHandshakeError, type ClientHandshakeErrorCode, connect, serve } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const retryable = (code: ClientHandshakeErrorCode, status: number) =>
 *   code === "CONNECTION_CLOSED" || (code === "UNEXPECTED_STATUS" && (status === 429 || status >= 500));
 * await using server = serve({
 *   port: 0,
 *   hostname: "127.0.0.1",
 *   onUpgrade: () => new Response("down for maintenance", { status: 503 }),
 * }, () => {});
 * const error = await connect(`ws://127.0.0.1:${server.addr.port}`).catch((e) => e);
 * assert.ok(error instanceof ClientHandshakeError && retryable(error.code, error.status));
 * ```
 */
export type ClientHandshakeErrorCode =
  typeof CLIENT_HANDSHAKE_ERROR_CODE[keyof typeof CLIENT_HANDSHAKE_ERROR_CODE];

/**
 * The server's response did not complete the opening handshake; the client
 * fails the connection (RFC 6455 §4.1) and reports this error.
 *
 * @example Usage
 * ```ts
 * import { ClientHandshakeError } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const error = new ClientHandshakeError("UNEXPECTED_STATUS", "Not found", { status: 404, body: "no such room" });
 * assert.equal(error.status, 404);
 * assert.equal(error.body, "no such room");
 * ```
 */
export class ClientHandshakeError extends Error {
  /** What went wrong, as a stable identifier. */
  readonly code: ClientHandshakeErrorCode;
  /** The response's HTTP status code; 0 when no status line was parsed. */
  readonly status: number;
  /**
   * The start of the response body (at most 512 bytes, as text; a chunked
   * one decoded), for a non-101 status.
   */
  readonly body: string;
  /**
   * The response's header fields (`Location` of a redirect, `Retry-After`
   * of a 429 or 503); empty when the response head was not parsed.
   */
  readonly headers: Headers;

  /**
   * Creates the error.
   *
   * @param code What went wrong.
   * @param message A sentence for the user.
   * @param details The response status, the start of its body and its
   * header fields; the error that ended the connection, if one did.
   */
  constructor(
    code: ClientHandshakeErrorCode,
    message: string,
    details: {
      status?: number;
      body?: string;
      headers?: Headers;
      cause?: unknown;
    } = {},
  ) {
    super(
      message,
      details.cause === undefined ? undefined : { cause: details.cause },
    );
    this.name = "ClientHandshakeError";
    this.code = code;
    this.status = details.status ?? 0;
    this.body = details.body ?? "";
    this.headers = details.headers ?? new Headers();
  }
}

/**
 * Options of {@linkcode ClientHandshake.create}.
 *
 * @example A request offering two subprotocols, with a token
 * ```ts
 * import { ClientHandshake, type ClientHandshakeOptions } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const options: ClientHandshakeOptions = {
 *   protocols: ["v2", "v1"], // preferred first
 *   headers: { Authorization: "Bearer abc" },
 * };
 * const handshake = ClientHandshake.create("wss://example.com/feed", options);
 * const request = new TextDecoder().decode(handshake.request);
 * assert.match(request, /\r\nSec-WebSocket-Protocol: v2, v1\r\n/);
 * assert.match(request, /\r\nAuthorization: Bearer abc\r\n/i);
 * ```
 */
export interface ClientHandshakeOptions {
  /**
   * Subprotocols to offer, in order of preference (`Sec-WebSocket-Protocol`).
   * @default {[]}
   */
  protocols?: readonly string[];
  /**
   * Extra request headers (`Origin`, `Authorization`, `Cookie`, ...). A
   * `Host` here replaces the one derived from the URL; the handshake's own
   * fields (`Upgrade`, `Connection`, `Sec-WebSocket-*`) and body framing
   * (`Content-Length`, `Transfer-Encoding`) may not be set.
   * @default {{}}
   */
  headers?: HeadersInit;
  /**
   * The largest response head accepted, in bytes.
   * @default {16384}
   */
  maxHeadSize?: number;
  /**
   * The most response header fields accepted.
   * @default {100}
   */
  maxHeaders?: number;
  /**
   * Fills the 16 random bytes of `Sec-WebSocket-Key`. Inject a fixed key only
   * in tests.
   * @default {crypto.getRandomValues}
   */
  generateKey?: (bytes: Uint8Array) => void;
  /**
   * Offer permessage-deflate (RFC 7692): `true` with the default settings
   * (context takeover both ways, unless the server asks otherwise), or
   * settings; see {@linkcode ClientDeflateOptions}. The answer's parameters
   * are {@linkcode ClientHandshakeResult.perMessageDeflate}, with the
   * settings' `level`, `memLevel` and `threshold`.
   * @default {false}
   */
  perMessageDeflate?: boolean | ClientDeflateOptions;
}

/**
 * A response that completed the handshake.
 *
 * @example What a server agreed to
 * ```ts
 * import { ClientHandshake, type ClientHandshakeResult, computeAcceptKey } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const handshake = ClientHandshake.create("ws://example.com/", { perMessageDeflate: true });
 * const response = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
 *   `Sec-WebSocket-Accept: ${computeAcceptKey(handshake.key)}\r\n` +
 *   "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n\r\n";
 * const result: ClientHandshakeResult | undefined = handshake.receive(new TextEncoder().encode(response));
 * assert.equal(result?.protocol, ""); // no subprotocol
 * assert.equal(result?.perMessageDeflate?.serverNoContextTakeover, true);
 * assert.equal(result?.headers.get("upgrade"), "websocket");
 * ```
 */
export interface ClientHandshakeResult {
  /** The response's header fields. */
  headers: Headers;
  /** The subprotocol the server selected, or `""`. */
  protocol: string;
  /**
   * What permessage-deflate was agreed to, if the server accepted it: its
   * answer, and the client's own settings (`clientNoContextTakeover`, the
   * client's window, `level`, `memLevel`, `threshold`). Wire a
   * `Connection` from it as `ConnectionDeflate` (in `connection.ts`) says.
   */
  perMessageDeflate?: PerMessageDeflateParams;
}

/**
 * Where a {@linkcode ClientHandshake} is: reading the response head, reading
 * the start of a rejection's body, or done.
 *
 * @example A rejection: its head, then the start of its body
 * ```ts
 * import { ClientHandshake, type ClientHandshakeState } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const encode = (text: string) => new TextEncoder().encode(text);
 * const handshake = ClientHandshake.create("ws://example.com/");
 * const states: ClientHandshakeState[] = [handshake.state];
 * handshake.receive(encode("HTTP/1.1 403 Forbidden\r\nContent-Length: 6\r\n\r\n"));
 * states.push(handshake.state);
 * assert.throws(() => handshake.receive(encode("denied")), { status: 403, body: "denied" });
 * states.push(handshake.state);
 * assert.deepEqual(states, ["head", "body", "done"]);
 * ```
 */
export type ClientHandshakeState = "head" | "body" | "done";

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const STATUS_LINE = /^HTTP\/1\.(\d) (\d{3})(?: (.*))?$/;
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
// Fields the handshake itself decides (every Sec-WebSocket-* is the
// protocol's, RFC 6455 §11.3), and the message framing a GET must not have.
const RESERVED_HEADERS =
  /^(?:upgrade|connection|sec-websocket-.*|content-length|transfer-encoding)$/;
const BODY_PREVIEW = 512;
// The bytes of a chunked rejection read for its preview, framing included.
const CHUNKED_PREVIEW = 4 * BODY_PREVIEW;

// What a status line starts with ("HTTP/1.1 101"): "d" is any digit.
const STATUS_LINE_START = "HTTP/1.d ddd";

/** Whether `bytes` (a few, or none) could be the start of a status line. */
function couldStartStatusLine(bytes: Uint8Array): boolean {
  return bytes.every((byte, i) =>
    STATUS_LINE_START[i] === "d"
      ? byte >= 0x30 && byte <= 0x39
      : byte === STATUS_LINE_START.charCodeAt(i)
  );
}

/** Whether `bytes[from, to)` holds two line feeds in a row. */
function hasBareLineFeeds(bytes: Uint8Array, from: number, to: number) {
  for (let i = Math.max(0, from); i + 1 < to; i++) {
    if (bytes[i] === 0x0a && bytes[i + 1] === 0x0a) return true;
  }
  return false;
}
// Interim (1xx) responses taken before the final one.
const MAX_INTERIM = 8;

/**
 * The client side of the opening handshake, without I/O (RFC 6455 §4.1):
 * write {@linkcode ClientHandshake.prototype.request}, feed the response
 * bytes to {@linkcode ClientHandshake.prototype.receive} until it returns a
 * result, then hand {@linkcode ClientHandshake.prototype.rest} (the first
 * frame bytes, if any) to the connection.
 *
 * - The request carries a fresh random 16-byte key, `Host`, `Upgrade`,
 *   `Connection`, `Sec-WebSocket-Version: 13`, the offered subprotocols and
 *   the extra headers. A URL fragment is never sent.
 * - The response is checked in a fixed order: status 101, `Upgrade:
 *   websocket`, `Connection: upgrade`, `Sec-WebSocket-Accept` matching the
 *   key, no `Sec-WebSocket-Extensions` but a valid answer to the
 *   permessage-deflate offer, when one was made, and a
 *   `Sec-WebSocket-Protocol` that was offered (RFC 6455 §4.1, steps 1-6 of
 *   the client's checks). The first failed rule throws a
 *   {@linkcode ClientHandshakeError}; the caller then closes the connection.
 * - For a status other than 101 the handshake keeps reading the start of
 *   the body (up to 512 bytes, or `Content-Length`, or the end of the
 *   connection: call {@linkcode ClientHandshake.prototype.receiveEof}) so
 *   the error can say what the server answered.
 *
 * @example Completing a handshake with a canned response
 * ```ts
 * import { ClientHandshake, computeAcceptKey } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const handshake = ClientHandshake.create("ws://example.com/chat", { protocols: ["chat"] });
 * const request = new TextDecoder().decode(handshake.request);
 * assert.ok(request.startsWith("GET /chat HTTP/1.1\r\nHost: example.com\r\n"));
 * const response = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n" +
 *   `Connection: Upgrade\r\nSec-WebSocket-Accept: ${computeAcceptKey(handshake.key)}\r\n` +
 *   "Sec-WebSocket-Protocol: chat\r\n\r\n";
 * const result = handshake.receive(new TextEncoder().encode(response));
 * assert.equal(result?.protocol, "chat");
 * assert.equal(handshake.rest.length, 0);
 * ```
 */
export class ClientHandshake {
  /** The URL the handshake is for (`ws:` or `wss:`). */
  readonly url: URL;
  /** The `Sec-WebSocket-Key` sent: base64 of 16 random bytes. */
  readonly key: string;
  /** The request bytes to write to the connection. */
  readonly request: Uint8Array;

  readonly #accept: string;
  readonly #protocols: string[];
  // The permessage-deflate settings offered with, if any.
  readonly #deflate: Required<ClientDeflateOptions> | undefined;
  readonly #maxHeadSize: number;
  readonly #maxHeaders: number;
  #state: ClientHandshakeState = "head";
  #interim = 0;
  // Whether the head's first line has ended (and was a status line).
  #firstLineChecked = false;
  #buffer = new Uint8Array(0);
  #length = 0;
  #rest: Uint8Array = new Uint8Array(0);
  // The response's status, once parsed; a rejection's reason phrase and
  // how much of its body to read.
  #status = 0;
  #statusText = "";
  #headers: Headers | undefined;
  #bodyLimit = BODY_PREVIEW;
  // Whether a rejection's body is chunked: its bytes are then decoded.
  #chunked = false;
  // Where the next chunk of a chunked rejection body begins.
  #chunkAt = 0;

  /**
   * Prepares a handshake: checks the URL and options, makes the key and
   * computes the accept value the server must answer with.
   *
   * @param url A `ws:` or `wss:` URL.
   * @param options Subprotocols, extra headers and limits.
   * @returns The handshake, ready to send its request.
   * @throws {TypeError} When the URL is not `ws:`/`wss:` or a subprotocol or
   * header is not valid.
   * @throws {RangeError} When a limit is not a positive integer.
   */
  static create(
    url: string | URL,
    options: ClientHandshakeOptions = {},
  ): ClientHandshake {
    const bytes = new Uint8Array(16);
    (options.generateKey ?? ((b) => crypto.getRandomValues(b)))(bytes);
    const key = bytes.toBase64();
    return new ClientHandshake(
      parseUrl(url),
      key,
      computeAcceptKey(key),
      options,
    );
  }

  /**
   * Use {@linkcode ClientHandshake.create}, which computes `accept`.
   *
   * @param url The checked `ws:`/`wss:` URL.
   * @param key The `Sec-WebSocket-Key` to send.
   * @param accept `computeAcceptKey(key)`.
   * @param options Subprotocols, extra headers and limits.
   */
  constructor(
    url: URL,
    key: string,
    accept: string,
    options: ClientHandshakeOptions = {},
  ) {
    this.url = url;
    this.key = key;
    this.#accept = accept;
    this.#protocols = checkProtocols(options.protocols ?? []);
    this.#maxHeadSize = positive("maxHeadSize", options.maxHeadSize) ??
      DEFAULT_MAX_HEAD_SIZE;
    this.#maxHeaders = positive("maxHeaders", options.maxHeaders) ??
      DEFAULT_MAX_HEADERS;
    const deflate = options.perMessageDeflate ?? false;
    this.#deflate = deflate === false
      ? undefined
      : resolveClientDeflateOptions(deflate === true ? {} : deflate);
    this.request = encodeRequest(
      url,
      key,
      this.#protocols,
      options.headers,
      this.#deflate && clientDeflateOffer(this.#deflate),
    );
  }

  /** `head`, `body` (reading a rejection's body) or `done`. */
  get state(): ClientHandshakeState {
    return this.#state;
  }

  /** Bytes that followed a successful response head: the first frames. */
  get rest(): Uint8Array {
    return this.#rest;
  }

  /**
   * Adds response bytes.
   *
   * @param chunk The next bytes from the server (not kept).
   * @returns The result once a valid 101 response head has arrived, else
   * `undefined` (more bytes needed).
   * @throws {ClientHandshakeError} When the response fails a check, or once
   * enough of a rejection's body has arrived (`UNEXPECTED_STATUS`).
   * @throws {TypeError} When the handshake is over (succeeded or failed).
   */
  receive(chunk: Uint8Array): ClientHandshakeResult | undefined {
    if (this.#state === "done") {
      throw new TypeError(
        "Cannot receive: the handshake is over; give what follows (rest, and later bytes) to the Connection",
      );
    }
    if (this.#state === "body") {
      this.#append(chunk, this.#bodyLimit - this.#length);
      if (
        this.#length >= this.#bodyLimit ||
        (this.#chunked && this.#lastChunkCame())
      ) {
        throw this.#rejection();
      }
      return undefined;
    }
    const searchFrom = Math.max(0, this.#length - 3);
    const take = Math.min(chunk.length, this.#maxHeadSize - this.#length);
    this.#append(chunk, take);
    const end = findHeadEnd(this.#buffer, searchFrom, this.#length);
    if (
      hasBareLineFeeds(
        this.#buffer,
        searchFrom,
        end === -1 ? this.#length : end,
      )
    ) {
      // LF LF ends a head only without the CRs HTTP requires: such a head
      // would never end. (Looked for up to the head's end too, so that the
      // outcome does not depend on where the bytes were cut.)
      throw this.#fail(
        "MALFORMED_RESPONSE",
        "the response head's lines do not end with CRLF",
      );
    }
    if (end === -1) {
      this.#checkFirstLine(searchFrom);
      if (this.#length >= this.#maxHeadSize) {
        throw this.#fail(
          "RESPONSE_TOO_LARGE",
          `the response head is larger than ${this.#maxHeadSize} bytes`,
        );
      }
      return undefined;
    }
    const afterHead = chunk.subarray(end - (this.#length - take));
    const { status, statusText, headers } = this.#parse(
      decodeLatin1(this.#buffer.subarray(0, end - 4)),
    );
    if (status >= 100 && status < 200 && status !== 101) {
      // An interim response (RFC 9110 §15.2: a client must take them before
      // the final one); a few at most.
      if (++this.#interim > MAX_INTERIM) {
        throw this.#fail(
          "MALFORMED_RESPONSE",
          `the server sent more than ${MAX_INTERIM} interim (1xx) responses`,
        );
      }
      this.#buffer = new Uint8Array(0);
      this.#length = 0;
      this.#status = 0;
      this.#headers = undefined;
      this.#firstLineChecked = false;
      return this.receive(afterHead);
    }
    if (status !== 101) {
      // Read on for the start of the body, so the error can show it.
      this.#state = "body";
      this.#statusText = statusText;
      this.#buffer = new Uint8Array(0);
      this.#length = 0;
      // How the body ends (RFC 9112 §6.3): never for 204 and 304; at the
      // last chunk of a chunked one; else after Content-Length bytes, or at
      // the end of the connection.
      // 1*DIGIT (RFC 9110 §8.6); anything else frames nothing.
      const length = headers.get("content-length") ?? "";
      const declared = /^\d+$/.test(length) ? Number(length) : NaN;
      if (status === 204 || status === 304) this.#bodyLimit = 0;
      else if (
        /(?:^|,)[ \t]*chunked[ \t]*$/i.test(
          headers.get("transfer-encoding") ?? "",
        )
      ) {
        this.#chunked = true;
        this.#bodyLimit = CHUNKED_PREVIEW;
      } else if (Number.isSafeInteger(declared) && declared >= 0) {
        this.#bodyLimit = Math.min(declared, BODY_PREVIEW);
      }
      return this.receive(afterHead);
    }
    const result = this.#validate(headers);
    this.#state = "done";
    this.#rest = afterHead.slice();
    this.#buffer = new Uint8Array(0);
    return result;
  }

  /**
   * Records that the connection ended (or that the caller stopped waiting)
   * before the handshake completed.
   *
   * @param cause The error that ended the connection (a reset), if any.
   * @returns Never.
   * @throws {ClientHandshakeError} `UNEXPECTED_STATUS` with the body read so
   * far while reading a rejection; `MALFORMED_RESPONSE` when what arrived
   * cannot start a status line; else `CONNECTION_CLOSED`.
   */
  receiveEof(cause?: unknown): never {
    if (this.#state === "body") throw this.#rejection();
    this.#state = "done";
    const how = cause === undefined
      ? "closed the connection"
      : `reset the connection (${(cause as Error)?.message ?? cause})`;
    // A TLS alert record (content type 21, version 3.x): a wss:// server.
    const tls = this.url.protocol === "ws:" && this.#length >= 2 &&
      this.#buffer[0] === 0x15 && this.#buffer[1] === 0x03;
    // Bytes that cannot start a status line: not an HTTP server, which no
    // retry will make one (an empty answer may be a server restarting).
    const notHttp = !couldStartStatusLine(
      this.#buffer.subarray(
        0,
        Math.min(this.#length, STATUS_LINE_START.length),
      ),
    );
    throw this.#fail(
      notHttp ? "MALFORMED_RESPONSE" : "CONNECTION_CLOSED",
      `the server ${how} before completing the handshake${
        tls
          ? "; it answered with TLS: is it a wss:// server?"
          : notHttp
          ? `, after bytes that are not HTTP: ${
            quoted(
              decodeLatin1(
                this.#buffer.subarray(0, Math.min(this.#length, 32)),
              ),
            )
          }`
          : ""
      }`,
      { cause },
    );
  }

  /**
   * Fails a response whose first line, once it has ended, is not a status
   * line (an SSH banner, say) rather than waiting for a head that never
   * comes.
   */
  #checkFirstLine(searchFrom: number): void {
    if (this.#firstLineChecked) return;
    // Bytes before searchFrom were searched by the calls before.
    const lineEnd = this.#buffer.subarray(0, this.#length).indexOf(
      0x0a,
      searchFrom,
    );
    if (lineEnd === -1) return;
    this.#firstLineChecked = true;
    const line = decodeLatin1(this.#buffer.subarray(0, lineEnd)).replace(
      /\r$/,
      "",
    );
    if (!STATUS_LINE.test(line)) {
      throw this.#fail(
        "MALFORMED_RESPONSE",
        `the response does not start with an HTTP/1.1 status line: ${
          JSON.stringify(line.slice(0, 100))
        }`,
      );
    }
  }

  #append(chunk: Uint8Array, take: number): void {
    take = Math.max(0, Math.min(take, chunk.length));
    if (this.#buffer.length < this.#length + take) {
      const grown = new Uint8Array(
        Math.max(this.#length + take, this.#buffer.length * 2, 1024),
      );
      grown.set(this.#buffer.subarray(0, this.#length));
      this.#buffer = grown;
    }
    this.#buffer.set(chunk.subarray(0, take), this.#length);
    this.#length += take;
  }

  #parse(
    text: string,
  ): { status: number; statusText: string; headers: Headers } {
    const lines = text.split("\r\n");
    const statusLine = STATUS_LINE.exec(lines[0]);
    if (statusLine === null) {
      throw this.#fail(
        "MALFORMED_RESPONSE",
        `the response does not start with an HTTP/1.1 status line: ${
          JSON.stringify(lines[0].slice(0, 100))
        }`,
      );
    }
    this.#status = Number(statusLine[2]);
    if (this.#status < 100 || this.#status > 599) {
      throw this.#fail(
        "MALFORMED_RESPONSE",
        `the response's status ${this.#status} is not an HTTP status (100-599, RFC 9110 §15)`,
      );
    }
    if (this.#status === 101 && statusLine[1] === "0") {
      // An HTTP/1.0 server cannot switch protocols (RFC 9110 §15.2.2), and
      // the handshake is HTTP/1.1 (RFC 6455 §4.1).
      throw this.#fail(
        "MALFORMED_RESPONSE",
        "the server answered 101 in HTTP/1.0; the handshake needs HTTP/1.1",
      );
    }
    // A field value continued on the next line (obs-fold): a user agent
    // MUST replace the fold with spaces (RFC 9112 §5.2). A fold with no
    // field before it stays malformed (§2.2).
    const fields: string[] = [];
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i];
      if ((line[0] === " " || line[0] === "\t") && fields.length > 0) {
        // Only spaces and tabs go: anything else stays, to fail the field
        // value check as it would on one line.
        fields[fields.length - 1] += ` ${trimOws(line)}`;
      } else fields.push(line);
    }
    if (fields.length > this.#maxHeaders) {
      throw this.#fail(
        "RESPONSE_TOO_LARGE",
        `the response has ${fields.length} header fields; the limit is ${this.#maxHeaders}`,
      );
    }
    const headers = new Headers();
    for (const line of fields) {
      const colon = line.indexOf(":");
      const name = colon === -1 ? "" : line.slice(0, colon);
      const value = trimOws(line.slice(colon + 1));
      if (!TOKEN.test(name) || !FIELD_VALUE.test(value)) {
        throw this.#fail(
          "MALFORMED_RESPONSE",
          `malformed header field in the response: ${
            JSON.stringify(line.slice(0, 100))
          }`,
        );
      }
      headers.append(name, value);
    }
    this.#headers = headers;
    return {
      status: this.#status,
      statusText: statusLine[3] ?? "",
      headers,
    };
  }

  /** The client's checks of a 101 response, in RFC 6455 §4.1 order. */
  #validate(headers: Headers): ClientHandshakeResult {
    // "If the response lacks an |Upgrade| header field or the |Upgrade|
    // header field contains a value that is not an ASCII case-insensitive
    // match for the value "websocket", the client MUST _Fail the WebSocket
    // Connection_."
    const upgrade = headers.get("upgrade");
    if (upgrade?.toLowerCase() !== "websocket") {
      throw this.#fail(
        "INVALID_UPGRADE",
        `the response's Upgrade header must be websocket, got ${
          upgrade ?? "none"
        }`,
      );
    }
    // "If the response lacks a |Connection| header field or the
    // |Connection| header field doesn't contain a token that is an ASCII
    // case-insensitive match for the value "Upgrade", the client MUST _Fail
    // the WebSocket Connection_."
    const connection = headers.get("connection");
    if (
      !tokenList(connection).some((token) => token.toLowerCase() === "upgrade")
    ) {
      throw this.#fail(
        "INVALID_CONNECTION",
        `the response's Connection header must include upgrade, got ${
          connection ?? "none"
        }`,
      );
    }
    // "If the response lacks a |Sec-WebSocket-Accept| header field or the
    // |Sec-WebSocket-Accept| contains a value other than the base64-encoded
    // SHA-1 of the concatenation of the |Sec-WebSocket-Key| (as a string,
    // not base64-decoded) with the string "258EAFA5-E914-47DA-95CA-
    // C5AB0DC85B11" [...] the client MUST _Fail the WebSocket Connection_."
    const accept = headers.get("sec-websocket-accept");
    if (accept !== this.#accept) {
      throw this.#fail(
        "INVALID_ACCEPT",
        `the response's Sec-WebSocket-Accept must be ${this.#accept}, got ${
          accept ?? "none"
        } (the server did not answer this handshake)`,
      );
    }
    // "If the response includes a |Sec-WebSocket-Extensions| header field
    // and this header field indicates the use of an extension that was not
    // present in the client's handshake [...] the client MUST _Fail the
    // WebSocket Connection_."
    const extensions = headers.get("sec-websocket-extensions");
    let perMessageDeflate: PerMessageDeflateParams | undefined;
    if (extensions !== null && trimOws(extensions) !== "") {
      if (this.#deflate === undefined) {
        throw this.#fail(
          "UNEXPECTED_EXTENSION",
          `the server selected extensions that were not offered: ${extensions}`,
        );
      }
      const answer = acceptClientDeflate(extensions, this.#deflate);
      if ("reason" in answer) {
        throw this.#fail(
          "UNEXPECTED_EXTENSION",
          `the server's answer to the permessage-deflate offer cannot be used: ${answer.reason}; it answered ${extensions}`,
        );
      }
      perMessageDeflate = answer.params;
    }
    // "If the response includes a |Sec-WebSocket-Protocol| header field and
    // this header field indicates the use of a subprotocol that was not
    // present in the client's handshake [...] the client MUST _Fail the
    // WebSocket Connection_."
    const protocol = headers.get("sec-websocket-protocol");
    if (protocol !== null && !this.#protocols.includes(protocol)) {
      throw this.#fail(
        "UNEXPECTED_PROTOCOL",
        this.#protocols.length === 0
          ? `the server selected the subprotocol ${
            JSON.stringify(protocol)
          }, but none was offered`
          : `the server selected the subprotocol ${
            JSON.stringify(protocol)
          }, which is not one of ${this.#protocols.join(", ")}`,
      );
    }
    return { headers, protocol: protocol ?? "", perMessageDeflate };
  }

  /**
   * Whether a chunked body's last chunk has come, going on from the chunk
   * the last call reached: a body sent a byte at a time is not decoded
   * again from its start on every byte (the square of its size).
   */
  #lastChunkCame(): boolean {
    const bytes = this.#buffer.subarray(0, this.#length);
    // A framing error ends the content: the preview waits for its limit.
    for (let chunk; (chunk = chunkAt(bytes, this.#chunkAt)) !== null;) {
      if (chunk.size === 0) return true;
      if (chunk.next > bytes.length) return false;
      this.#chunkAt = chunk.next;
    }
    return false;
  }

  #rejection(): ClientHandshakeError {
    this.#state = "done";
    const bytes = this.#chunked
      ? dechunk(this.#buffer.subarray(0, this.#length))
      : this.#buffer.subarray(0, Math.min(this.#length, this.#bodyLimit));
    const body = new TextDecoder().decode(bytes.subarray(0, BODY_PREVIEW));
    const summary = body.trim().replace(/\s+/g, " ").slice(0, 200);
    return this.#fail(
      "UNEXPECTED_STATUS",
      `the server answered ${this.#status}${
        this.#statusText ? ` ${this.#statusText}` : ""
      } instead of 101 Switching Protocols${summary ? `: ${summary}` : ""}`,
      { body },
    );
  }

  #fail(
    code: ClientHandshakeErrorCode,
    reason: string,
    details: { body?: string; cause?: unknown } = {},
  ): ClientHandshakeError {
    this.#state = "done";
    return new ClientHandshakeError(
      code,
      `Cannot connect to ${this.url.href}: ${reason}`,
      { ...details, status: this.#status, headers: this.#headers },
    );
  }
}

/**
 * Decodes the start of a chunked body (RFC 9112 §7.1) as far as it is
 * complete and well-formed, for a rejection's preview: chunk extensions are
 * skipped, framing errors and the last chunk end the content.
 */
function dechunk(bytes: Uint8Array): Uint8Array {
  const parts: Uint8Array[] = [];
  for (let at = 0, chunk; (chunk = chunkAt(bytes, at)) !== null;) {
    if (chunk.size === 0) break;
    parts.push(bytes.subarray(chunk.start, chunk.start + chunk.size));
    if (chunk.next > bytes.length) break;
    at = chunk.next;
  }
  return concat(parts);
}

/**
 * The chunk whose size line begins at `at`: where its data starts, its size
 * (0 for the last chunk) and where the next chunk begins (past the data's
 * CRLF); `null` while its size line is incomplete or malformed.
 */
function chunkAt(
  bytes: Uint8Array,
  at: number,
): { start: number; size: number; next: number } | null {
  const lineEnd = bytes.indexOf(0x0a, at);
  if (lineEnd === -1) return null;
  const line = decodeLatin1(bytes.subarray(at, lineEnd));
  if (!CHUNK_SIZE_LINE.test(line)) return null;
  const size = parseInt(line, 16);
  return { start: lineEnd + 1, size, next: lineEnd + 1 + size + 2 };
}

// A chunk's size, then its extensions if any (RFC 9112 §7.1).
const CHUNK_SIZE_LINE = /^[0-9a-f]+(?:[; \t\r]|$)/i;

function parseUrl(input: string | URL): URL {
  let url: URL;
  try {
    url = new URL(input);
  } catch {
    throw new TypeError(
      `Cannot connect: "url" must be an absolute ws: or wss: URL, got ${
        JSON.stringify(String(input))
      }`,
    );
  }
  // As the WebSocket standard does: http: means ws:, https: wss:.
  if (url.protocol === "http:") url.protocol = "ws:";
  else if (url.protocol === "https:") url.protocol = "wss:";
  if (url.protocol !== "ws:" && url.protocol !== "wss:") {
    throw new TypeError(
      `Cannot connect: "url" must use ws: or wss: (or http: or https:), got ${url.protocol}`,
    );
  }
  if (url.username !== "" || url.password !== "") {
    // A ws: URI has no userinfo (RFC 6455 §3); kept, it would show the
    // password in socket.url and every error message.
    throw new TypeError(
      "Cannot connect: a ws: or wss: URL may not carry credentials (user:password@); send them in a header such as Authorization",
    );
  }
  // "Fragment identifiers are meaningless in the context of WebSocket URIs"
  // (RFC 6455 §3): dropped, so `socket.url` is the URL connected to.
  url.hash = "";
  return url;
}

function checkProtocols(protocols: readonly string[]): string[] {
  // "The elements that comprise this value MUST be non-empty strings with
  // characters in the range U+0021 to U+007E not including separator
  // characters [...] and MUST all be unique strings" (RFC 6455 §4.1).
  if (!Array.isArray(protocols)) {
    throw new TypeError(
      `Cannot connect: "protocols" must be an array of strings, got ${typeof protocols}`,
    );
  }
  const seen = new Set<string>();
  for (const protocol of protocols) {
    if (typeof protocol !== "string" || !TOKEN.test(protocol)) {
      throw new TypeError(
        `Cannot connect: "protocols" must hold HTTP tokens, got ${
          JSON.stringify(protocol)
        }`,
      );
    }
    if (seen.has(protocol)) {
      throw new TypeError(
        `Cannot connect: "protocols" must be unique, got ${protocol} twice`,
      );
    }
    seen.add(protocol);
  }
  return [...protocols];
}

function encodeRequest(
  url: URL,
  key: string,
  protocols: string[],
  extra: HeadersInit | undefined,
  extensions: string | undefined,
): Uint8Array {
  let host = url.host;
  let fields = "";
  // Headers validates names and values (no CR, LF or NUL).
  let headers: Headers;
  try {
    headers = new Headers(extra);
  } catch (error) {
    throw new TypeError(
      `Cannot connect: "headers" are not valid: ${(error as Error).message}`,
    );
  }
  for (const [name, value] of headers) {
    if (RESERVED_HEADERS.test(name)) {
      throw new TypeError(
        `Cannot connect: "headers" may not set ${name}; ${
          name.startsWith("sec-") || name === "upgrade" ||
            name === "connection"
            ? "the handshake sets it"
            : "a handshake request has no body"
        }${name === "sec-websocket-protocol" ? ' (use "protocols")' : ""}`,
      );
    }
    if (name === "host") {
      // One valid authority (Headers joins two values with ", ").
      if (!/^[^\s,/?#@]+$/.test(value)) {
        throw new TypeError(
          `Cannot connect: "headers" must give one Host as host[:port], got ${
            JSON.stringify(value)
          }`,
        );
      }
      host = value;
    } else fields += `${name}: ${value}\r\n`;
  }
  const target = `${url.pathname || "/"}${url.search}`;
  let head = `GET ${target} HTTP/1.1\r\nHost: ${host}\r\n` +
    "Upgrade: websocket\r\nConnection: Upgrade\r\n" +
    `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n`;
  if (protocols.length > 0) {
    head += `Sec-WebSocket-Protocol: ${protocols.join(", ")}\r\n`;
  }
  if (extensions !== undefined) {
    head += `Sec-WebSocket-Extensions: ${extensions}\r\n`;
  }
  return encodeLatin1(`${head}${fields}\r\n`);
}

function positive(name: string, value: number | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new (typeof value === "number" ? RangeError : TypeError)(
      `Cannot connect: "${name}" must be a positive integer, got ${
        shown(value)
      }`,
    );
  }
  return value;
}
