import { positiveInteger } from "./_checks.ts";
import { trimOws } from "./_headers.ts";
import { HandshakeError } from "./errors.ts";
import { decodeLatin1, findHeadEnd } from "./_bytes.ts";

/**
 * A parsed HTTP/1.x request head (RFC 9112 §2-5).
 *
 * @example Reading a parsed head
 * ```ts
 * import { type HttpRequestHead, HttpRequestParser } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * // Fields keep their order and spelling: look them up without regard to case.
 * const field = (head: HttpRequestHead, name: string) =>
 *   head.headers.find(([n]) => n.toLowerCase() === name)?.[1];
 * const head = new HttpRequestParser().receive(
 *   new TextEncoder().encode("GET /chat?room=1 HTTP/1.1\r\nHost: example.com\r\nX-Token: abc\r\n\r\n"),
 * )!;
 * assert.equal(head.target, "/chat?room=1");
 * assert.equal(`${head.versionMajor}.${head.versionMinor}`, "1.1");
 * assert.equal(field(head, "x-token"), "abc");
 * ```
 */
export interface HttpRequestHead {
  /** The method, case-sensitive (`GET`). */
  method: string;
  /** The request target as sent (`/chat?room=1`). */
  target: string;
  /** The HTTP version's major digit. */
  versionMajor: number;
  /** The HTTP version's minor digit. */
  versionMinor: number;
  /** Header fields in the order received; names as sent. */
  headers: [name: string, value: string][];
}

/**
 * Options of {@linkcode HttpRequestParser}.
 *
 * @example Tighter limits for a server behind nothing
 * ```ts
 * import { HttpRequestParser, type HttpRequestParserOptions } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const options: HttpRequestParserOptions = { maxHeadSize: 4096, maxHeaders: 2 };
 * const head = "GET / HTTP/1.1\r\nHost: example.com\r\nA: 1\r\nB: 2\r\n\r\n";
 * assert.throws(() => new HttpRequestParser(options).receive(new TextEncoder().encode(head)), {
 *   name: "HandshakeError",
 *   status: 431, // Request Header Fields Too Large
 * });
 * ```
 */
export interface HttpRequestParserOptions {
  /**
   * The largest request head accepted, in bytes, request line and blank line
   * included; a larger one is rejected with 431, or 414 when its request
   * line alone is larger (RFC 9112 §3).
   * @default {16384}
   */
  maxHeadSize?: number;
  /**
   * The most header fields accepted; more are rejected with 431.
   * @default {100}
   */
  maxHeaders?: number;
}

/**
 * Default of {@linkcode HttpRequestParserOptions.maxHeadSize}: 16 KiB.
 *
 * @example Room for long cookies
 * ```ts
 * import { DEFAULT_MAX_HEAD_SIZE, serve } from "@duplex/ws";
 *
 * await using _server = serve({
 *   port: 0,
 *   hostname: "127.0.0.1",
 *   maxHeadSize: DEFAULT_MAX_HEAD_SIZE * 2,
 * }, () => {});
 * ```
 */
export const DEFAULT_MAX_HEAD_SIZE = 16 * 1024;
/**
 * Default of {@linkcode HttpRequestParserOptions.maxHeaders}: 100.
 *
 * @example
 * ```ts
 * import { DEFAULT_MAX_HEADERS, HttpRequestParser } from "@duplex/ws";
 *
 * new HttpRequestParser({ maxHeaders: DEFAULT_MAX_HEADERS / 2 });
 * ```
 */
export const DEFAULT_MAX_HEADERS = 100;

const EMPTY = new Uint8Array(0);
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const VERSION = /^HTTP\/(\d)\.(\d)$/;
// A request target is made of URI characters: visible ASCII (RFC 9112 §3.2),
// and has no fragment: no "#".
const TARGET = /^[\x21\x22\x24-\x7e]+$/;
// Field values: visible ASCII, obs-text, space and tab (RFC 9110 §5.5).
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/**
 * An incremental parser for one HTTP/1.1 request head, with size limits.
 * Feed it chunks until it returns the head; bytes after the head (a client
 * may send its first frames right away) are available as
 * {@linkcode HttpRequestParser.prototype.rest}.
 *
 * @example Parsing a head that arrives in two pieces
 * ```ts
 * import { HttpRequestParser } from "@duplex/ws";
 * import assert from "node:assert/strict";
 *
 * const parser = new HttpRequestParser();
 * const bytes = new TextEncoder().encode("GET /chat HTTP/1.1\r\nHost: example.com\r\n\r\n");
 * assert.equal(parser.receive(bytes.subarray(0, 10)), undefined);
 * const head = parser.receive(bytes.subarray(10));
 * assert.equal(head?.target, "/chat");
 * assert.deepEqual(head?.headers, [["Host", "example.com"]]);
 * ```
 */
export class HttpRequestParser {
  readonly #maxHeadSize: number;
  readonly #maxHeaders: number;
  #buffer = EMPTY;
  #length = 0;
  #rest = EMPTY;
  #done = false;
  // How far the method was checked; -1 once it ended (see checkMethod).
  #methodChecked = 0;

  /**
   * Creates a parser for one request head.
   *
   * @param options The size limits.
   */
  constructor(options: HttpRequestParserOptions = {}) {
    this.#maxHeadSize = positiveInteger(
      "maxHeadSize",
      options.maxHeadSize ?? DEFAULT_MAX_HEAD_SIZE,
    );
    this.#maxHeaders = positiveInteger(
      "maxHeaders",
      options.maxHeaders ?? DEFAULT_MAX_HEADERS,
    );
  }

  /** Bytes that followed the head in the chunk that completed it. */
  get rest(): Uint8Array {
    return this.#rest;
  }

  /**
   * Adds bytes; returns the head once its blank line has arrived.
   *
   * @param chunk The next bytes from the client (not kept).
   * @returns The parsed head, or `undefined` while it is incomplete.
   * @throws {HandshakeError} 414 when the request line alone is over
   * `maxHeadSize`, 431 when the head or its field count is, 400 when it is
   * malformed.
   * @throws {TypeError} When the head was parsed already: what follows it
   * (`rest`, and later bytes) is for the connection, or for a new parser.
   */
  receive(chunk: Uint8Array): HttpRequestHead | undefined {
    if (this.#done) {
      throw new TypeError(
        "Cannot receive: this parser has parsed its request head; give what follows (rest, and later bytes) to the Connection, or to a new parser for the next request",
      );
    }
    if (this.#length === 0) {
      // Usually the whole head comes in one chunk: parse it in place.
      const end = findHeadEnd(
        chunk,
        0,
        Math.min(chunk.length, this.#maxHeadSize),
      );
      if (end !== -1) {
        this.#rest = end === chunk.length ? EMPTY : chunk.slice(end);
        return this.#parse(decodeLatin1(chunk.subarray(0, end - 4)));
      }
    }
    const searchFrom = Math.max(0, this.#length - 3);
    const room = this.#maxHeadSize - this.#length;
    const take = Math.min(chunk.length, room);
    if (this.#buffer.length < this.#length + take) {
      const grown = new Uint8Array(
        Math.min(
          this.#maxHeadSize,
          Math.max(this.#length + take, this.#buffer.length * 2, 1024),
        ),
      );
      grown.set(this.#buffer.subarray(0, this.#length));
      this.#buffer = grown;
    }
    this.#buffer.set(chunk.subarray(0, take), this.#length);
    this.#length += take;
    const end = findHeadEnd(this.#buffer, searchFrom, this.#length);
    if (end === -1) {
      // Bytes that cannot begin a request (a TLS handshake sent to a plain
      // server, say) are answered now, not after the handshake timeout.
      const buffer = this.#buffer;
      if (this.#methodChecked >= 0) {
        this.#methodChecked = checkMethod(
          (i) => buffer[i],
          this.#length,
          this.#methodChecked,
        );
      }
      // Lines must end with CRLF (RFC 9112 §2.2): a head sent with bare LFs
      // would never end, and wait for the handshake timeout.
      for (let i = this.#length - take; i < this.#length; i++) {
        if (buffer[i] === 0x0a && (i === 0 || buffer[i - 1] !== 0x0d)) {
          throw bareLf();
        }
      }
      if (this.#length >= this.#maxHeadSize) {
        // "A server that receives a request-target longer than any URI it
        // wishes to parse MUST respond with a 414" (RFC 9112 §3).
        if (!hasLineEnd(this.#buffer, this.#length)) {
          throw new HandshakeError(
            414,
            `Request line is longer than ${this.#maxHeadSize} bytes`,
          );
        }
        throw new HandshakeError(
          431,
          `Request head is larger than ${this.#maxHeadSize} bytes`,
        );
      }
      return undefined;
    }
    const consumedFromChunk = end - (this.#length - take);
    this.#rest = chunk.slice(consumedFromChunk);
    return this.#parse(decodeLatin1(this.#buffer.subarray(0, end - 4)));
  }

  #parse(text: string): HttpRequestHead {
    this.#done = true;
    if (this.#methodChecked >= 0) {
      checkMethod((i) => text.charCodeAt(i), text.length, 0);
    }
    if (BARE_LF.test(text)) throw bareLf();
    const lines = text.split("\r\n");
    // "a server that is expecting to receive and parse a request-line SHOULD
    // ignore at least one empty line (CRLF) received prior to the
    // request-line" (RFC 9112 §2.2).
    if (lines[0] === "") lines.shift();
    const requestLine = lines[0] ?? "";
    const parts = requestLine.split(" ");
    const version = VERSION.exec(parts[2] ?? "");
    if (
      parts.length !== 3 || !TOKEN.test(parts[0]) || !TARGET.test(parts[1]) ||
      version === null
    ) {
      throw new HandshakeError(
        400,
        `Malformed request line: ${JSON.stringify(requestLine.slice(0, 100))}`,
      );
    }
    if (lines.length - 1 > this.#maxHeaders) {
      throw new HandshakeError(
        431,
        `Request has ${
          lines.length - 1
        } header fields; the limit is ${this.#maxHeaders}`,
      );
    }
    const headers: [string, string][] = [];
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i];
      const colon = line.indexOf(":");
      const name = colon === -1 ? "" : line.slice(0, colon);
      const value = trimOws(line.slice(colon + 1));
      if (!TOKEN.test(name) || !FIELD_VALUE.test(value)) {
        throw new HandshakeError(
          400,
          `Malformed header field: ${JSON.stringify(line.slice(0, 100))}`,
        );
      }
      headers.push([name, value]);
    }
    return {
      method: parts[0],
      target: parts[1],
      versionMajor: Number(version[1]),
      versionMinor: Number(version[2]),
      headers,
    };
  }
}

/** Whether a CRLF ends a line in `bytes` (an empty first line aside). */
/**
 * Throws 400 when what came so far cannot begin a request line: its method,
 * up to the first space, must be a token (RFC 9112 §3), after the empty
 * lines a server may ignore (§2.2). `at(i)` is the i-th byte; the bytes
 * before `from` were checked by an earlier call (a head arriving a byte at
 * a time is not checked again from its start each time).
 *
 * @returns Where to go on from with more bytes, or -1 once the method ended.
 */
function checkMethod(
  at: (i: number) => number,
  length: number,
  from: number,
): number {
  const isLineEnd = (byte: number) => byte === 0x0d || byte === 0x0a;
  // Only empty lines came before `from` unless the method began there.
  let begun = from > 0 && !isLineEnd(at(from - 1));
  for (let i = from; i < length; i++) {
    const byte = at(i);
    if (isLineEnd(byte) && !begun) continue;
    if (byte === 0x20 || isLineEnd(byte)) return -1;
    begun = true;
    if (!TCHAR[byte]) {
      let start = 0;
      while (isLineEnd(at(start))) start++;
      throw new HandshakeError(
        400,
        at(start) === 0x16
          ? "Not an HTTP request but a TLS handshake: the client wants wss:// or https://, and this server is plain"
          : `Malformed request line: byte 0x${
            byte.toString(16).padStart(2, "0")
          } in the method`,
      );
    }
  }
  return length;
}

const BARE_LF = /(?:^|[^\r])\n/;

function bareLf(): HandshakeError {
  return new HandshakeError(
    400,
    "Malformed request head: a line ends with a bare LF, not CRLF",
  );
}

// The token characters (RFC 9110 §5.6.2), by byte.
const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~0123456789") TCHAR[c.charCodeAt(0)] = 1;
for (let c = 0x41; c <= 0x5a; c++) TCHAR[c] = TCHAR[c + 0x20] = 1;

function hasLineEnd(bytes: Uint8Array, length: number): boolean {
  const start = bytes[0] === 0x0d && bytes[1] === 0x0a ? 2 : 0;
  for (let i = start; i + 1 < length; i++) {
    if (bytes[i] === 0x0d && bytes[i + 1] === 0x0a) return true;
  }
  return false;
}
